package embeddednats_test

import (
	"testing"

	"github.com/enmanuel/unibus/internal/testcerts"
)

func newTestCA(t *testing.T) *testcerts.CA { return testcerts.NewCA(t, "unibus test ca") }
