package userspace

import (
	"testing"

	"github.com/ktls-go/ktls/internal/testing/testenv"
)

func TestMain(m *testing.M) { testenv.MainWithLeakCheck(m) }
