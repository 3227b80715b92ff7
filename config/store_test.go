package config

import (
	"bufio"
	"strings"
	"testing"
)

func TestStoreQuotaValidation(t *testing.T) {
	const gib = 1 << 30
	tests := []struct {
		name  string
		quota int64
		mem   int64
		want  string // substring of the error; "" for valid
	}{
		{"default on 8 GiB", DefaultStoreQuotaBytes, 8 * gib, ""},
		{"memory unknown", DefaultStoreQuotaBytes, 0, ""},
		{"small quota", 1 << 20, 8 * gib, ""},
		{"too small", 1000, 8 * gib, "store.quotaBytes (--store-quota-bytes): 1000 is below the minimum"},
		{"more than memory", 4 * gib, 2 * gib, "store.quotaBytes (--store-quota-bytes): 4294967296 bytes is more than this machine's 2147483648 bytes of memory; the store is held in memory, so set at most 1073741824"},
	}
	for _, tc := range tests {
		t.Run(tc.name, func(t *testing.T) {
			s := DefaultServer().Store
			s.QuotaBytes = tc.quota
			errs := s.validate(tc.mem)
			if tc.want == "" {
				if len(errs) != 0 {
					t.Fatalf("unexpected errors: %v", errs)
				}
				return
			}
			if len(errs) != 1 || !strings.Contains(errs[0].Error(), tc.want) {
				t.Fatalf("errors %v, want one containing %q", errs, tc.want)
			}
		})
	}
}

func TestParseMemTotal(t *testing.T) {
	in := "MemFree:  100 kB\nMemTotal:       24683748 kB\n"
	if got := parseMemTotal(bufio.NewScanner(strings.NewReader(in))); got != 24683748*1024 {
		t.Fatalf("parseMemTotal = %d", got)
	}
	if got := parseMemTotal(bufio.NewScanner(strings.NewReader("nothing\n"))); got != 0 {
		t.Fatalf("parseMemTotal without MemTotal = %d", got)
	}
}
