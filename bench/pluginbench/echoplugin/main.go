// Command echoplugin serves the benchmark's echo controller as a plugin.
package main

import (
	"github.com/keelson/keelson/bench/pluginbench/echo"
	"github.com/keelson/keelson/plugins/sdk"
)

func main() { sdk.Serve(echo.Plugin()) }
