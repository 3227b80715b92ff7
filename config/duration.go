package config

import (
	"encoding/json"
	"fmt"
	"time"
)

// Duration is a time.Duration that reads and writes as a Go duration string
// ("500ms", "2m") in YAML, so config files stay readable.
type Duration struct {
	time.Duration
	// bad keeps an unparseable value from the file, so that validation can
	// report it with the field's name (the decoder does not know it).
	bad string
}

// MarshalJSON writes the duration as a string such as "2m0s".
func (d Duration) MarshalJSON() ([]byte, error) { return json.Marshal(d.String()) }

// UnmarshalJSON accepts a duration string ("10s") or a number of seconds.
func (d *Duration) UnmarshalJSON(b []byte) error {
	var s string
	if err := json.Unmarshal(b, &s); err == nil {
		v, err := time.ParseDuration(s)
		if err != nil {
			d.bad = s
			return nil
		}
		d.Duration, d.bad = v, ""
		return nil
	}
	var secs float64
	if err := json.Unmarshal(b, &secs); err != nil {
		d.bad = string(b)
		return nil
	}
	d.Duration, d.bad = time.Duration(secs*float64(time.Second)), ""
	return nil
}

// check reports a value that was not a duration.
func (d Duration) check() error {
	if d.bad != "" {
		return fmt.Errorf("invalid duration %s: use a number with a unit such as \"500ms\", \"10s\" or \"5m\"", d.bad)
	}
	return nil
}
