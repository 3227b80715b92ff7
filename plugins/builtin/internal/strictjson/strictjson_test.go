package strictjson

import (
	"strings"
	"testing"
)

type section struct {
	ClusterCIDR string  `json:"clusterCIDR"`
	Rate        float64 `json:"rate,omitempty"`
	Skipped     string  `json:"-"`
	hidden      int
}

func TestDecode(t *testing.T) {
	for _, tc := range []struct {
		raw, want, wantErr string
	}{
		{raw: ``, want: "keep"},
		{raw: `{"clusterCIDR":"10.0.0.0/8","rate":0.5}`, want: "10.0.0.0/8"},
		{raw: `{"clustercidr":"10.0.0.0/8"}`, wantErr: `unknown field "clustercidr"; the fields are clusterCIDR, rate`},
		{raw: `{"Skipped":"x"}`, wantErr: `unknown field "Skipped"`},
		{raw: `[1]`, wantErr: "not a JSON object"},
		{raw: `{"rate":"fast"}`, wantErr: "cannot unmarshal string"},
	} {
		s := section{ClusterCIDR: "keep"}
		err := Decode([]byte(tc.raw), &s)
		switch {
		case tc.wantErr != "" && (err == nil || !strings.Contains(err.Error(), tc.wantErr)):
			t.Errorf("Decode(%s) = %v, want an error saying %q", tc.raw, err, tc.wantErr)
		case tc.wantErr == "" && (err != nil || s.ClusterCIDR != tc.want):
			t.Errorf("Decode(%s) = %+v, %v; want clusterCIDR %q", tc.raw, s, err, tc.want)
		}
	}
	_ = section{}.hidden
}
