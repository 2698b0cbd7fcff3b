package server_test

import (
	"os"
	"testing"

	"github.com/sirupsen/logrus"
)

func TestMain(m *testing.M) {
	// distribution logs every request through logrus; keep test output readable.
	logrus.SetLevel(logrus.ErrorLevel)
	os.Exit(m.Run())
}
