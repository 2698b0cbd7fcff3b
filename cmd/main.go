// Command dockyard is the single binary in the dockyard image:
//
//	dockyard manager [flags]          the operator (the default when no command is given)
//	dockyard registry serve|gc ...    the registry workload run in a Registry's pods
//	dockyard login REGISTRY           log in through the Registry's OIDC provider (device flow)
//	dockyard version
package main

import (
	"context"
	"errors"
	"fmt"
	"os"

	ctrl "sigs.k8s.io/controller-runtime"

	"github.com/dockyard-dev/dockyard/internal/login"
	"github.com/dockyard-dev/dockyard/internal/manager"
	"github.com/dockyard-dev/dockyard/internal/workload"
)

// version is set with -ldflags "-X main.version=...".
var version = "dev"

func main() {
	args := os.Args[1:]
	cmd := "manager"
	if len(args) > 0 && (args[0] == "manager" || args[0] == "registry" || args[0] == "login" || args[0] == "version") {
		cmd, args = args[0], args[1:]
	}
	ctx := ctrl.SetupSignalHandler()
	var err error
	switch cmd {
	case "version":
		fmt.Println(version)
	case "registry":
		err = workload.Run(ctx, args, os.Stdout, os.Stderr)
	case "login":
		err = login.Run(ctx, args, os.Stdin, os.Stdout, os.Stderr)
	default:
		err = manager.Run(ctx, args, version)
	}
	if err != nil {
		if !errors.Is(err, context.Canceled) {
			fmt.Fprintln(os.Stderr, "dockyard:", err)
		}
		os.Exit(1)
	}
}
