//go:build !keelson_embedplugins

package pluginbin

// Without the keelson_embedplugins tag nothing is embedded: built-in
// plugins run from the keelson binary itself (`keelson plugin NAME`).
var (
	embeddedGzip   []byte
	embeddedSHA256 string
)
