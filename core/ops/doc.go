// Package ops holds the operator procedures of a Keelson server: the admin
// protocol that `keelson raft` and `keelson snapshot save` speak to a running
// server over DATA_DIR/admin.sock, the snapshot file format, and the offline
// repairs of a stopped server's data dir (snapshot restore, cluster reset).
//
// Every procedure refuses rather than damages: the online ones will not
// remove the leader they run on or break the remaining voters' quorum, and
// the offline ones will not touch a data dir a server is running on, nor
// overwrite existing raft state.
package ops
