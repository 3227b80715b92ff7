// Package agent holds the node agent's end-to-end tests: a real `keelson
// server` and `keelson agent` on loopback, pods run on containerd with CNI,
// driven through `keelson kubectl` and client-go. They run as root with
// containerd, runc, the CNI plugins and busybox-static installed, and skip
// otherwise.
package agent
