package runtime

import (
	"bufio"
	"os"
	"strconv"
	"strings"
)

// capSysResource is the capability a process needs to give another an
// oom_score_adj below its own.
const capSysResource = 24

// oomScoreAdjFloor is the lowest oom_score_adj this process (and the
// containerd, shims and runc it starts) can give a container: none with
// CAP_SYS_RESOURCE, else its own. runc fails to start a container asked
// for less, so Create raises it to the floor, as containerd's CRI does with
// restrict_oom_score_adj where that capability is missing.
func oomScoreAdjFloor() int {
	status, err := os.ReadFile("/proc/self/status")
	if err != nil {
		return -1000
	}
	own, err := os.ReadFile("/proc/self/oom_score_adj")
	if err != nil {
		return -1000
	}
	return floorFrom(string(status), string(own))
}

// floorFrom reads the floor from /proc/self/status (its CapEff line) and
// /proc/self/oom_score_adj.
func floorFrom(status, own string) int {
	sc := bufio.NewScanner(strings.NewReader(status))
	for sc.Scan() {
		hex, ok := strings.CutPrefix(sc.Text(), "CapEff:")
		if !ok {
			continue
		}
		caps, err := strconv.ParseUint(strings.TrimSpace(hex), 16, 64)
		if err != nil || caps&(1<<capSysResource) != 0 {
			return -1000
		}
		adj, err := strconv.Atoi(strings.TrimSpace(own))
		if err != nil {
			return -1000
		}
		return adj
	}
	return -1000
}
