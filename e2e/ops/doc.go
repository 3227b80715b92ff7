// Package ops tests the operator's day-2 procedures end to end with real
// keelson processes: removing Keelson from a host after a crash
// (`keelson killall`, `keelson uninstall`).
package ops
