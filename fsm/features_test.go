package fsm

import "testing"

// Every command type Apply knows has a level no higher than FeatureLevel,
// and every type with a level is one Apply knows: adding a type without
// a level (or a level without the type) fails here.
func TestCommandLevels(t *testing.T) {
	top := 0
	for typ := 0; typ < 256; typ++ {
		level := CommandLevel(byte(typ))
		_, err := newMessage(byte(typ))
		known := err == nil || byte(typ) == CmdFenced // a wrapper, not a message
		if (level > 0) != known {
			t.Errorf("command type %d: level %d, known to Apply: %v", typ, level, known)
		}
		if level > FeatureLevel {
			t.Errorf("command type %d has level %d above FeatureLevel %d", typ, level, FeatureLevel)
		}
		top = max(top, level)
	}
	if top != FeatureLevel {
		t.Errorf("FeatureLevel %d but the highest command level is %d", FeatureLevel, top)
	}
}
