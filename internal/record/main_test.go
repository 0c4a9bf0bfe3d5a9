// The leak check lives in package record_test: internal/testing/testenv imports
// backend, which takes its content types and MaxPlaintext from this package,
// so an in-package import of testenv would be a cycle.
package record_test

import (
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }
