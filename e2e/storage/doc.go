// Package storage holds the end-to-end tests of persistent storage: a real
// `keelson server` running the scheduler, persistentvolume, localpath and
// namespace plugins, and a real `keelson agent` on loopback whose pods
// mount claims. Claims bind, data survives its pods, deleted claims take
// their volumes and directories with them. They run as root with
// containerd, runc, the CNI plugins and busybox-static installed, and skip
// otherwise.
package storage
