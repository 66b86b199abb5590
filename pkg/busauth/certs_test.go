package busauth_test

import (
	"testing"

	"github.com/enmanuel/unibus/internal/testcerts"
)

func newTestCA(t *testing.T, name string) *testcerts.CA { return testcerts.NewCA(t, name) }
