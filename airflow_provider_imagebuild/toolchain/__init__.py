"""The external tools a milestone runs: child processes, Packer and Ansible (ansible-runner)."""
