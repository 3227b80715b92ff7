package fsm

// Command types are added by newer versions, and a server that meets one it
// does not know stops applying (raftnode halts) rather than diverge. So a
// rolling upgrade must not propose a new type until every server can apply
// it: each server advertises the FeatureLevel of its build (a gossip tag),
// and the server about to propose a command whose CommandLevel exceeds any
// server's level refuses it instead (core/server's commandGate), as Consul
// and Nomad gate features on every server's version.

// FeatureLevel is the highest command level this build applies. Raise it
// whenever a command type is added, and give the new type that level in
// CommandLevel.
const FeatureLevel = 3

// CommandLevel is the feature level that introduced command type typ (0 for
// a type this build does not know). Level 1 is every type that existed
// before levels were advertised: every server applies it.
func CommandLevel(typ byte) int {
	switch typ {
	case CmdTxn, CmdCompact, CmdLeaseGrant, CmdLeaseRevoke, CmdLeaseExpire:
		return 1
	case CmdAlarm:
		return 2
	case CmdFenced:
		return 3
	}
	return 0
}
