// Package ha runs whole keelson clusters of real processes, each server in
// its own network namespace on a bridge the test creates, injects faults
// (kill -9 and restart, SIGSTOP/SIGCONT, iptables partitions, a full data
// disk) and checks what clients could observe: linearizability of recorded
// compare-and-swap histories (porcupine), watch streams that are ordered,
// gapless and duplicate-free, acknowledged writes present on every server
// after healing, identical state machine hashes at equal revisions, and a new
// leader with writes succeeding after every fault.
//
// It needs root and `ip netns`; tests skip without them. Traffic goes only to
// addresses on the bridge the test made (10.99.X.0/24), and every namespace,
// bridge, mount and process it creates is removed when the test ends.
//
// The default scenarios run in `make test`. KEELSON_SOAK=10m (any Go
// duration) also runs TestSoak, which injects faults in random order until the
// duration has passed.
package ha
