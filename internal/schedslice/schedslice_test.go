package schedslice

import (
	"testing"
	"time"
)

func TestValidate(t *testing.T) {
	for _, tc := range []struct {
		d  time.Duration
		ok bool
	}{
		{0, true},
		{Min, true},
		{500 * time.Microsecond, true},
		{Max, true},
		{Min - 1, false},
		{Max + 1, false},
		{-time.Millisecond, false},
	} {
		if err := Validate(tc.d); (err == nil) != tc.ok {
			t.Errorf("Validate(%v) = %v, want ok %v", tc.d, err, tc.ok)
		}
	}
	if _, err := Set(Max + 1); err == nil {
		t.Error("Set accepted a slice above Max")
	}
}
