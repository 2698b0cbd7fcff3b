// Package registryconfig is the contract between the Dockyard operator and the registry
// workload (`dockyard registry serve` / `dockyard registry gc`).
//
// It owns everything both sides must agree on: the config file type and its YAML format,
// the ports, the health path, the command lines, where files are mounted in the pod, the
// names of the environment variables that carry credentials, the keys expected in referenced
// Secrets and the JSON summary a garbage-collection run prints. The operator renders a
// Config into a ConfigMap; the workload parses the same file. No secret value is ever part
// of a Config: credentials reach the process through environment variables or mounted files
// whose names are fixed here.
package registryconfig
