//go:build keelson_embedplugins

package pluginbin

import _ "embed"

// Written by `make build` before it builds keelson with this tag.
var (
	//go:embed keelson-plugins.gz
	embeddedGzip []byte
	//go:embed keelson-plugins.sha256
	embeddedSHA256 string
)
