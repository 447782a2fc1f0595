// A vCenter simulator for the vSphere tests, built from the govmomi simulator library that
// Debian ships (golang-github-vmware-govmomi-dev), because no vcsim program is packaged and the
// Go module proxy is out of reach. `make setup` builds it in GOPATH mode.
//
// It serves the default VPX inventory (DC0, cluster DC0_C0, hosts DC0_H0 and DC0_C0_H0..2,
// datastore LocalDS_0, "VM Network", VMs DC0_H0_VM0...) plus a second cluster, DC0_C1 (hosts
// DC0_C1_H0..2), whose DRS is turned off, with the SOAP SDK and the vAPI REST endpoints
// (sessions, content libraries, tags) over https on 127.0.0.1, since Packer's vSphere builders
// speak https only. It prints its URL on the first line of stdout, then serves until SIGTERM.
// With -u USER:PASSWORD only that login is accepted (a wrong one is refused as vCenter refuses
// it); without it, any.
//
// The simulator accepts requests that vCenter refuses; strict() refuses them as vCenter does,
// before the simulator sees them (see refusal()).
//
// The simulator runs every task to its end before answering; a vCenter copying a large disk does
// not. A test makes the next clone to a given name stall as such a copy does (POST
// /vcsim/stall-clone?name=NAME): the clone's VM is in the inventory and its task stays running,
// busy as vCenter says while it runs (Destroy_Task: TaskInProgress), until CancelTask ends it
// (see stalls).
package main

import (
	"bytes"
	"crypto/tls"
	"encoding/xml"
	"flag"
	"fmt"
	"io"
	"net/http"
	"net/http/httptest"
	"net/url"
	"os"
	"os/signal"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"time"

	"github.com/vmware/govmomi/simulator"
	"github.com/vmware/govmomi/vim25/types"

	_ "github.com/vmware/govmomi/lookup/simulator"
	_ "github.com/vmware/govmomi/pbm/simulator"
	_ "github.com/vmware/govmomi/sts/simulator"
	_ "github.com/vmware/govmomi/vapi/simulator"
)

// NoDRS is the cluster whose DRS is off: vCenter places nothing there by itself.
const NoDRS = "DC0_C1"

// MaxName is vCenter's limit on an inventory name (VMware KB 2051649), counted with '%', '/' and
// '\' escaped as vCenter stores them (%25, %2f, %5c): "Up to 80 characters may be used (fewer if
// the characters %, \ or / are used)".
const MaxName = 80

func main() {
	listen := flag.String("l", "127.0.0.1:0", "address to listen on (loopback only)")
	login := flag.String("u", "", "the only USER:PASSWORD accepted (default: any)")
	flag.Parse()

	model := simulator.VPX()
	model.Cluster = 2
	if err := model.Create(); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}
	defer model.Remove()
	if err := withoutDRS(NoDRS); err != nil {
		fmt.Fprintln(os.Stderr, "vcsim:", err)
		os.Exit(1)
	}

	model.Service.Listen = &url.URL{Host: *listen}
	if user, password, ok := strings.Cut(*login, ":"); ok {
		model.Service.Listen.User = url.UserPassword(user, password)
	}
	model.Service.TLS = new(tls.Config)
	model.Service.RegisterEndpoints = true
	server := model.Service.NewServer()
	defer server.Close()
	// Before the first request: nothing has been served yet (the URL is not printed).
	server.Config.Handler = strict(server.Config.Handler)

	fmt.Println(server.URL.String())

	stop := make(chan os.Signal, 1)
	signal.Notify(stop, syscall.SIGTERM, syscall.SIGINT)
	<-stop
}

// withoutDRS turns DRS off on the named cluster, as an administrator does in its settings.
func withoutDRS(name string) error {
	for _, entity := range simulator.Map.All("ClusterComputeResource") {
		cluster := entity.(*simulator.ClusterComputeResource)
		if cluster.Name == name {
			cluster.ConfigurationEx.(*types.ClusterConfigInfoEx).DrsConfig.Enabled = types.NewBool(false)
			return nil
		}
	}
	return fmt.Errorf("no cluster %s in the inventory", name)
}

// strict answers a SOAP request that vCenter refuses with vCenter's fault, and passes every
// other request to the simulator. A method override on the simulator's objects cannot do it:
// the simulator makes every VM (clones too) as its own *simulator.VirtualMachine and asserts
// that type in many places, so a wrapper type registered for a VM would break it. The request
// is decoded with the simulator's own decoder, so what is checked is what it would run.
func strict(next http.Handler) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if r.Method == http.MethodPost && r.URL.Path == "/vcsim/stall-clone" {
			stalls.ask(r.URL.Query().Get("name"))
			w.WriteHeader(http.StatusNoContent)
			return
		}
		if r.Method != http.MethodPost || r.URL.Path != "/sdk" {
			next.ServeHTTP(w, r)
			return
		}
		body, err := io.ReadAll(r.Body)
		_ = r.Body.Close()
		if err != nil {
			w.WriteHeader(http.StatusBadRequest)
			return
		}
		r.Body = io.NopCloser(bytes.NewReader(body))
		method, err := simulator.UnmarshalBody(types.TypeFunc(), body)
		if err == nil {
			if f := refusal(method.Body); f != nil {
				f.write(w)
				return
			}
			if f := stalls.answer(method.Body); f != nil {
				f.write(w)
				return
			}
			if clone, ok := method.Body.(*types.CloneVM_Task); ok && stalls.take(clone.Name) {
				answer := httptest.NewRecorder()
				next.ServeHTTP(answer, r)
				stalls.stall(answer.Body.String())
				for k, v := range answer.Header() {
					w.Header()[k] = v
				}
				w.WriteHeader(answer.Code)
				_, _ = w.Write(answer.Body.Bytes())
				return
			}
		}
		next.ServeHTTP(w, r)
		if err == nil {
			tools(method.Body)
		}
	})
}

// tools reports the guest as VMware Tools does once a powered-on VM's guest has booted: its IP
// address (guest.ipAddress, what a launch waits for), Tools running and the guest state; and
// none of it once the VM is off. The simulator runs no guest and reports no address by itself
// (only its SET.guest.ipAddress extraConfig hook sets one). The address is one of TEST-NET-2
// (RFC 5737, 198.51.100.0/24), which no host answers: a test that needs a guest behind it gives
// the stand-in guest's address instead (target.boot.ssh_address).
func tools(body types.AnyType) {
	var ref types.ManagedObjectReference
	switch req := body.(type) {
	case *types.PowerOnVM_Task:
		ref = req.This
	case *types.PowerOffVM_Task:
		ref = req.This
	default:
		return
	}
	vm, ok := simulator.Map.Get(ref).(*simulator.VirtualMachine)
	if !ok {
		return
	}
	simulator.Map.WithLock(vm, func() {
		ip, running, state := "", types.VirtualMachineToolsRunningStatusGuestToolsNotRunning, "notRunning"
		if vm.Runtime.PowerState == types.VirtualMachinePowerStatePoweredOn {
			ip, running, state = guestAddress(ref), types.VirtualMachineToolsRunningStatusGuestToolsRunning, "running"
		}
		simulator.Map.Update(vm, []types.PropertyChange{
			{Name: "guest.ipAddress", Val: ip},
			{Name: "summary.guest.ipAddress", Val: ip},
			{Name: "guest.toolsRunningStatus", Val: string(running)},
			{Name: "guest.guestState", Val: state},
		})
	})
}

// guestAddress is a VM's TEST-NET-2 address, from the number of its managed object id (vm-42).
func guestAddress(ref types.ManagedObjectReference) string {
	n := 0
	for _, c := range ref.Value {
		if c >= '0' && c <= '9' {
			n = n*10 + int(c-'0')
		}
	}
	return fmt.Sprintf("198.51.100.%d", n%250+2)
}

// fault is one of vCenter's faults: its type, message and the detail's fields (XML).
type fault struct {
	kind, detail, message string
}

func esc(s string) string {
	var b strings.Builder
	_ = xml.EscapeText(&b, []byte(s))
	return b.String()
}

func ref(field string, r types.ManagedObjectReference) string {
	return fmt.Sprintf(`<%s type="%s">%s</%s>`, field, esc(r.Type), esc(r.Value), field)
}

func invalidArgument(property string) *fault {
	return &fault{"InvalidArgument", "<invalidProperty>" + esc(property) + "</invalidProperty>",
		"A specified parameter was not correct: " + property}
}

func invalidName(name string) *fault {
	return &fault{"InvalidName", "<name>" + esc(name) + "</name>",
		fmt.Sprintf("The name '%s' is invalid or exceeds the maximum number of characters permitted.", name)}
}

// duplicateName: "A DuplicateName exception is thrown because a name already exists in the same
// name space" (vim.fault.DuplicateName); the simulator (govmomi before #2984) clones over it.
func duplicateName(name string, folder types.ManagedObjectReference) *fault {
	return &fault{"DuplicateName", "<name>" + esc(name) + "</name>" + ref("object", folder),
		fmt.Sprintf("The name '%s' already exists.", name)}
}

// taskInProgress: "if the virtual machine is busy" (Destroy_Task's vim.fault.TaskInProgress).
func taskInProgress(task types.ManagedObjectReference) *fault {
	return &fault{"TaskInProgress", ref("task", task), "The operation is not allowed in the current state."}
}

// invalidState: CancelTask of a task "already canceled or completed".
func invalidState() *fault {
	return &fault{"InvalidState", "", "The operation is not allowed in the current state."}
}

// refusal is vCenter's answer to what it refuses and the simulator would accept:
//   - a clone into a resource pool of a cluster without DRS and no host; a host outside the
//     pool's cluster (pyVmomi's vim.vm.RelocateSpec.host: "if resource pool is specified and the
//     target pool represents a cluster without DRS enabled, an InvalidArgument exception be
//     thrown"; a clone to a template ignores the pool);
//   - MarkAsVirtualMachine with no host in such a pool, or a host outside it
//     (vim.VirtualMachine.MarkAsVirtualMachine: "For a stand-alone host or a cluster with DRS,
//     it can be omitted"; "must specify a host that is a member of the ComputeResource
//     indirectly specified by the pool");
//   - an inventory name over MaxName (CloneVM_Task, CreateVM_Task, Rename_Task);
//   - a clone named as something already in its destination folder (DuplicateName).
func refusal(body types.AnyType) *fault {
	switch req := body.(type) {
	case *types.CloneVM_Task:
		if tooLong(req.Name) {
			return invalidName(req.Name)
		}
		if f := taken(req.Folder, req.Name); f != nil {
			return f
		}
		if req.Spec.Template || req.Spec.Location.Pool == nil {
			return nil
		}
		return placement(*req.Spec.Location.Pool, req.Spec.Location.Host, "spec.location.host")
	case *types.MarkAsVirtualMachine:
		return placement(req.Pool, req.Host, "host")
	case *types.CreateVM_Task:
		if tooLong(req.Config.Name) {
			return invalidName(req.Config.Name)
		}
		return placement(req.Pool, req.Host, "host")
	case *types.Rename_Task:
		if tooLong(req.NewName) {
			return invalidName(req.NewName)
		}
	}
	return nil
}

// placement refuses a host that is missing where the pool's cluster has no DRS to choose one,
// and a host that is not in the pool's compute resource.
func placement(pool types.ManagedObjectReference, host *types.ManagedObjectReference, property string) *fault {
	var owner types.ManagedObjectReference
	switch p := simulator.Map.Get(pool).(type) {
	case *simulator.ResourcePool:
		owner = p.Owner
	case *simulator.VirtualApp:
		owner = p.Owner
	default:
		return nil // the simulator answers a pool that is not one itself
	}
	var members []types.ManagedObjectReference
	drs := true
	switch c := simulator.Map.Get(owner).(type) {
	case *simulator.ClusterComputeResource:
		members = c.Host
		if info, ok := c.ConfigurationEx.(*types.ClusterConfigInfoEx); ok && info.DrsConfig.Enabled != nil {
			drs = *info.DrsConfig.Enabled
		}
	default:
		return nil // a stand-alone host's pool: its one host is used
	}
	if host == nil {
		if drs {
			return nil
		}
		return invalidArgument(property)
	}
	for _, member := range members {
		if member == *host {
			return nil
		}
	}
	return invalidArgument(property)
}

// taken refuses a name a child of the folder already has.
func taken(folder types.ManagedObjectReference, name string) *fault {
	f, ok := simulator.Map.Get(folder).(*simulator.Folder)
	if !ok {
		return nil // the simulator answers a folder that is not one itself
	}
	var children []types.ManagedObjectReference
	simulator.Map.WithLock(f, func() { children = append(children, f.ChildEntity...) })
	if simulator.Map.FindByName(name, children) != nil {
		return duplicateName(name, folder)
	}
	return nil
}

func tooLong(name string) bool {
	escaped := len(name) + 2*(strings.Count(name, "%")+strings.Count(name, "/")+strings.Count(name, `\`))
	return escaped > MaxName
}

// stallBook holds the clones a test asked to stall (by destination name, once each) and the
// stalled clones' tasks, running until cancelled, with the VM each is making. "A cancel operation
// is asynchronous" and vCenter removes what a cancelled clone made where it can; this one leaves
// the VM in the inventory, as a clean-up that did not finish does, so that what removes it is the
// client's own clean-up.
type stallBook struct {
	sync.Mutex
	asked   map[string]bool
	running map[types.ManagedObjectReference]types.ManagedObjectReference // task -> VM
}

var stalls = &stallBook{asked: map[string]bool{}, running: map[types.ManagedObjectReference]types.ManagedObjectReference{}}

var taskRef = regexp.MustCompile(`<returnval type="Task">([^<]+)</returnval>`)

func (s *stallBook) ask(name string) {
	s.Lock()
	defer s.Unlock()
	s.asked[name] = true
}

// take says whether a clone to name is to stall (the test's one ask is used up).
func (s *stallBook) take(name string) bool {
	s.Lock()
	defer s.Unlock()
	asked := s.asked[name]
	delete(s.asked, name)
	return asked
}

// stall turns the clone the simulator finished (its answer names the task) into one still running.
func (s *stallBook) stall(answer string) {
	m := taskRef.FindStringSubmatch(answer)
	if m == nil {
		return
	}
	task, ok := simulator.Map.Get(types.ManagedObjectReference{Type: "Task", Value: m[1]}).(*simulator.Task)
	if !ok {
		return
	}
	vm, made := task.Info.Result.(types.ManagedObjectReference)
	if task.Info.State != types.TaskInfoStateSuccess || !made {
		return // refused: nothing runs
	}
	simulator.Map.Update(task, []types.PropertyChange{
		{Name: "info.state", Val: types.TaskInfoStateRunning},
		{Name: "info.result", Val: nil},
		{Name: "info.completeTime", Val: nil},
		{Name: "info.cancelable", Val: true},
	})
	s.Lock()
	defer s.Unlock()
	s.running[task.Self] = vm
}

// answer is vCenter's answer about a stalled clone, or nil: CancelTask ends its task in error
// (RequestCanceled) and of any other task is InvalidState, since every other task here has ended;
// Destroy_Task of the VM it is making is refused (TaskInProgress) while it runs.
func (s *stallBook) answer(body types.AnyType) *fault {
	s.Lock()
	defer s.Unlock()
	switch req := body.(type) {
	case *types.CancelTask:
		if _, running := s.running[req.This]; !running {
			return invalidState()
		}
		delete(s.running, req.This)
		task := simulator.Map.Get(req.This).(*simulator.Task)
		canceled := types.LocalizedMethodFault{Fault: &types.RequestCanceled{}, LocalizedMessage: "The task was canceled by a user."}
		simulator.Map.Update(task, []types.PropertyChange{
			{Name: "info.state", Val: types.TaskInfoStateError},
			{Name: "info.error", Val: canceled},
			{Name: "info.completeTime", Val: time.Now()},
		})
		return &fault{} // answered: no fault (see write)
	case *types.Destroy_Task:
		for task, vm := range s.running {
			if vm == req.This {
				return taskInProgress(task)
			}
		}
	}
	return nil
}

// write sends the fault as vCenter does: HTTP 500 and a SOAP fault whose detail pyVmomi and
// govmomi turn into the fault type; a fault without a kind is CancelTask's empty answer.
func (f *fault) write(w http.ResponseWriter) {
	w.Header().Set("Content-Type", "text/xml; charset=utf-8")
	const envelope = `<?xml version="1.0" encoding="UTF-8"?>
<soapenv:Envelope xmlns:soapenc="http://schemas.xmlsoap.org/soap/encoding/" xmlns:soapenv="http://schemas.xmlsoap.org/soap/envelope/" xmlns:xsd="http://www.w3.org/2001/XMLSchema" xmlns:xsi="http://www.w3.org/2001/XMLSchema-instance">
<soapenv:Body>%s</soapenv:Body>
</soapenv:Envelope>`
	if f.kind == "" {
		fmt.Fprintf(w, envelope, `<CancelTaskResponse xmlns="urn:vim25"></CancelTaskResponse>`)
		return
	}
	w.WriteHeader(http.StatusInternalServerError)
	body := fmt.Sprintf(`<soapenv:Fault><faultcode>ServerFaultCode</faultcode><faultstring>%s</faultstring>`+
		`<detail><%sFault xmlns="urn:vim25" xsi:type="%s">%s</%sFault></detail></soapenv:Fault>`,
		esc(f.message), f.kind, f.kind, f.detail, f.kind)
	fmt.Fprintf(w, envelope, body)
}
