package parallel

import (
	"errors"
	"sync/atomic"
	"testing"
)

func TestForCallsEveryIndexOnce(t *testing.T) {
	for _, n := range []int{0, 1, 7, 1000} {
		for _, minPer := range []int{0, 1, 64} {
			seen := make([]atomic.Int32, n)
			if err := For(n, minPer, func(i int) error { seen[i].Add(1); return nil }); err != nil {
				t.Fatalf("For(%d, %d) = %v", n, minPer, err)
			}
			for i := range seen {
				if c := seen[i].Load(); c != 1 {
					t.Fatalf("For(%d, %d): index %d called %d times", n, minPer, i, c)
				}
			}
		}
	}
}

func TestForReportsAnError(t *testing.T) {
	bad := errors.New("bad member")
	for _, minPer := range []int{1, 1000} { // on every core, and in one loop
		err := For(500, minPer, func(i int) error {
			if i == 321 {
				return bad
			}
			return nil
		})
		if !errors.Is(err, bad) {
			t.Fatalf("For with a failing index (minPer %d) = %v; want the error", minPer, err)
		}
	}
}
