package ha

import (
	"testing"
	"time"
)

func TestHarnessSmoke(t *testing.T) {
	c := NewCluster(t, Options{})
	l, term := c.WaitLeader(t, time.Minute, nil)
	c.WaitWritable(t, time.Minute)
	l.Kill()
	nl, nterm := c.WaitLeader(t, time.Minute, func(s *Server, tm uint64) bool { return s != l })
	t.Logf("old %s/%d new %s/%d", l.Name, term, nl.Name, nterm)
	c.WaitWritable(t, time.Minute)
	l.Start(t)
	c.WaitWritable(t, time.Minute)
	c.CheckHashes(t, time.Minute)
}
