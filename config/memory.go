package config

import (
	"bufio"
	"os"
	"strconv"
	"strings"
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
