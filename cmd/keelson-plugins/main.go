// Command keelson-plugins serves keelson's built-in plugins, one per
// process: the plugin host runs `keelson-plugins NAME` for each enabled
// built-in (or `keelson-plugins group NAME MEMBER...` for a group of them,
// the opt-in shared mode). It links only client-go, the plugin SDK and the controllers, so
// a plugin process does not pay for the initialisation of kube-apiserver,
// kubectl and the containerd client that the keelson binary carries.
// `make build` embeds it in keelson, which extracts it into its data dir.
// The few built-ins whose libraries would cost every process at start
// (multicall.ServedByKeelson) are not here: the keelson binary serves them.
package main

import (
	"fmt"
	"os"

	"github.com/keelson/keelson/plugins/builtin/multicall"
)

func main() {
	if err := multicall.Lean().Serve(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keelson-plugins:", err)
		os.Exit(2)
	}
}
