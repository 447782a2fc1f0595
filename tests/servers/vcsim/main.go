// A vCenter simulator for the vSphere tests, built from the govmomi simulator library that
// Debian ships (golang-github-vmware-govmomi-dev), because no vcsim program is packaged and the
// Go module proxy is out of reach. `make setup` builds it in GOPATH mode.
//
// It serves the default VPX inventory (DC0, cluster DC0_C0, hosts DC0_H0 and DC0_C0_H0..2,
// datastore LocalDS_0, "VM Network", VMs DC0_H0_VM0...) with the SOAP SDK and the vAPI REST
// endpoints (sessions, content libraries, tags) over https on 127.0.0.1, since Packer's vSphere
// builders speak https only. It prints its URL on the first line of stdout, then serves until
// SIGTERM. With -u USER:PASSWORD only that login is accepted (a wrong one is refused as vCenter
// refuses it); without it, any.
package main

import (
	"crypto/tls"
	"flag"
	"fmt"
	"net/url"
	"os"
	"os/signal"
	"strings"
	"syscall"

	"github.com/vmware/govmomi/simulator"

	_ "github.com/vmware/govmomi/lookup/simulator"
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/sts/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

func main() {
	listen := flag.String("l", "127.0.0.1:0", "address to listen on (loopback only)")
	login := flag.String("u", "", "the only USER:PASSWORD accepted (default: any)")
	flag.Parse()

	model := simulator.VPX()
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	defer model.Remove()

	model.Service.Listen = &url.URL{Host: *listen}
	if user, password, ok := strings.Cut(*login, ":"); ok {
		model.Service.Listen.User = url.UserPassword(user, password)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	defer server.Close()

	fmt.Println(server.URL.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}
