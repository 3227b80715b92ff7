package config

import (
	"bufio"
	"fmt"
	"os"
	"strconv"
	"strings"
	"time"
)

// systemMemoryBytes is the machine's total memory from /proc/meminfo, or 0
// when it cannot be read (then nothing is checked against it).
func systemMemoryBytes() int64 {
	f, err := os.Open("/proc/meminfo")
	if err != nil {
		return 0
	}
	defer f.Close()
	return parseMemTotal(bufio.NewScanner(f))
}

// parseMemTotal reads the MemTotal line ("MemTotal:  24683748 kB").
func parseMemTotal(sc *bufio.Scanner) int64 {
	for sc.Scan() {
		fields := strings.Fields(sc.Text())
		if len(fields) == 3 && fields[0] == "MemTotal:" && fields[2] == "kB" {
			kb, err := strconv.ParseInt(fields[1], 10, 64)
			if err != nil {
				return 0
			}
			return kb * 1024
		}
	}
	return 0
}

// validate checks the store settings; memBytes is the machine's memory (0
// when unknown, then the quota is not checked against it).
func (s *Store) validate(memBytes int64) []error {
	var errs []error
	switch {
	case s.QuotaBytes < minStoreQuotaBytes:
		errs = append(errs, fmt.Errorf("store.quotaBytes (--store-quota-bytes): %d is below the minimum %d (1 MiB); the default is %d (2 GiB)", s.QuotaBytes, minStoreQuotaBytes, DefaultStoreQuotaBytes))
	case memBytes > 0 && s.QuotaBytes > memBytes:
		// The store lives in memory on every server: a quota above the
		// memory would let every server run out of it before the alarm.
		errs = append(errs, fmt.Errorf("store.quotaBytes (--store-quota-bytes): %d bytes is more than this machine's %d bytes of memory; the store is held in memory, so set at most %d (half the memory leaves room for kube-apiserver's cache)", s.QuotaBytes, memBytes, memBytes/2))
	}
	if s.MaxRequestBytes < 1024 || s.MaxRequestBytes > 64<<20 {
		errs = append(errs, fmt.Errorf("store.maxRequestBytes (--max-request-bytes): %d is outside 1024..%d", s.MaxRequestBytes, 64<<20))
	}
	if s.MaxTxnOps < 1 {
		errs = append(errs, fmt.Errorf("store.maxTxnOps (--max-txn-ops): %d must be at least 1", s.MaxTxnOps))
	}
	if s.HistoryRevisions < 0 {
		errs = append(errs, fmt.Errorf("store.historyRevisions (--history-revisions): %d must be 0 (keep all) or positive", s.HistoryRevisions))
	}
	if s.HistoryBytes < 0 {
		errs = append(errs, fmt.Errorf("store.historyBytes (--history-bytes): %d must be 0 (no size bound) or positive", s.HistoryBytes))
	}
	if err := s.LeaseMinTTL.check(); err != nil {
		errs = append(errs, fmt.Errorf("store.leaseMinTTL (--lease-min-ttl): %w", err))
	} else if s.LeaseMinTTL.Duration < time.Second {
		errs = append(errs, fmt.Errorf("store.leaseMinTTL (--lease-min-ttl): %s must be at least 1s", s.LeaseMinTTL.Duration))
	}
	return errs
}
