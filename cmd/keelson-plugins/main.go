// Command keelson-plugins serves keelson's built-in plugins, one per
// process: the plugin host runs `keelson-plugins NAME` for each enabled
// built-in (or `keelson-plugins group NAME MEMBER...` for a group of them,
// the opt-in shared mode). It links only client-go, the plugin SDK and the controllers, so
// a plugin process does not pay for the initialisation of kube-apiserver,
// kubectl and the containerd client that the keelson binary carries.
// `make build` embeds it in keelson, which extracts it into its data dir.
package main

import (
	"fmt"
	"os"

	"github.com/keelson/keelson/plugins/builtin"
)

func main() {
	if err := builtin.Serve(os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "keelson-plugins:", err)
		os.Exit(2)
	}
}
