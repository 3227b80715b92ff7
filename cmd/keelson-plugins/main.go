// Command keelson-plugins serves keelson's built-in plugins, one per
// process: the plugin host runs `keelson-plugins NAME` for each enabled
// built-in. It links only client-go, the plugin SDK and the controllers, so
// a plugin process does not pay for the initialisation of kube-apiserver,
// kubectl and the containerd client that the keelson binary carries.
// `make build` embeds it in keelson, which extracts it into its data dir.
package main

import (
	"fmt"
	"os"
	"strings"

	"github.com/keelson/keelson/plugins/builtin"
	"github.com/keelson/keelson/plugins/sdk"
)

func main() {
	if len(os.Args) != 2 {
		fmt.Fprintf(os.Stderr, "usage: keelson-plugins NAME (started by the keelson plugin host, not by hand); built-in plugins are: %s\n",
			strings.Join(append(builtin.Names(), builtin.NodeNames()...), ", "))
		os.Exit(2)
	}
	p, ok := builtin.Lookup(os.Args[1])
	if !ok {
		fmt.Fprintf(os.Stderr, "keelson-plugins: no built-in plugin %q; built-in plugins are: %s\n",
			os.Args[1], strings.Join(append(builtin.Names(), builtin.NodeNames()...), ", "))
		os.Exit(2)
	}
	sdk.Serve(p)
}
