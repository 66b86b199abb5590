// Package parallel runs the iterations of a loop on every core: for the
// loops unibus spends its CPU in (sealing a key to every member of a room,
// checking the identity bindings of a bulk add), where each iteration is
// independent and costs tens of microseconds.
package parallel

import (
	"runtime"
	"sync"
	"sync/atomic"
)

// For calls fn(i) for every i in [0, n), from as many goroutines as the
// machine has cores but never more than one per minPer iterations (a small
// loop is not worth a goroutine per core). Each goroutine stops at its
// first error; For returns one of the errors, nil when every call
// succeeded.
func For(n, minPer int, fn func(i int) error) error {
	workers := min(runtime.GOMAXPROCS(0), max(1, n/max(1, minPer)))
	if workers <= 1 {
		for i := range n {
			if err := fn(i); err != nil {
				return err
			}
		}
		return nil
	}
	var (
		next atomic.Int64
		errs = make([]error, workers)
		wg   sync.WaitGroup
	)
	for w := range workers {
		wg.Add(1)
		go func() {
			defer wg.Done()
			for {
				i := int(next.Add(1) - 1)
				if i >= n {
					return
				}
				if err := fn(i); err != nil {
					errs[w] = err
					return
				}
			}
		}()
	}
	wg.Wait()
	for _, err := range errs {
		if err != nil {
			return err
		}
	}
	return nil
}
