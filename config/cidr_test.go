package config

import (
	"strings"
	"testing"
)

func TestParseClusterCIDRs(t *testing.T) {
	cases := []struct {
		in      string
		want    string // the parsed CIDRs joined by ","; empty for an error
		wantErr string
	}{
		{in: "10.42.0.0/16", want: "10.42.0.0/16"},
		{in: "10.42.0.0/16, fd42::/56", want: "10.42.0.0/16,fd42::/56"},
		{in: "fd42::/56,10.42.0.0/16", want: "fd42::/56,10.42.0.0/16"},
		{in: "", wantErr: "must not be empty"},
		{in: "10.42.0.0", wantErr: "not a CIDR"},
		{in: "10.42.3.0/16", wantErr: "use the network address 10.42.0.0/16"},
		{in: "10.42.0.0/16,10.43.0.0/16", wantErr: "same IP family"},
		{in: "10.0.0.0/8,fd00::/8,fe00::/8", wantErr: "has 3 CIDRs"},
		{in: "::ffff:10.0.0.0/104", wantErr: "IPv4-mapped"},
	}
	for _, tc := range cases {
		got, err := ParseClusterCIDRs(tc.in)
		if tc.wantErr != "" {
			if err == nil || !strings.Contains(err.Error(), tc.wantErr) {
				t.Errorf("ParseClusterCIDRs(%q) = %v, %v; want an error saying %q", tc.in, got, err, tc.wantErr)
			}
			continue
		}
		var s []string
		for _, p := range got {
			s = append(s, p.String())
		}
		if err != nil || strings.Join(s, ",") != tc.want {
			t.Errorf("ParseClusterCIDRs(%q) = %v, %v; want %s", tc.in, s, err, tc.want)
		}
	}
}

func TestServiceIP(t *testing.T) {
	for _, tt := range []struct {
		cidr    string
		n       int
		want    string
		wantErr bool
	}{
		{"10.43.0.0/16", 10, "10.43.0.10", false},
		{"10.96.0.0/12,fd00::/108", 10, "10.96.0.10", false},
		{"fd00:43::/108", 10, "fd00:43::a", false},
		{"10.43.0.0/29", 10, "", true},
		{"nonsense", 10, "", true},
	} {
		got, err := ServiceIP(tt.cidr, tt.n)
		if (err != nil) != tt.wantErr || (err == nil && got.String() != tt.want) {
			t.Errorf("ServiceIP(%q, %d) = %v, %v; want %q (error: %v)", tt.cidr, tt.n, got, err, tt.want, tt.wantErr)
		}
	}
}
