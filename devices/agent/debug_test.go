package agent_test

import (
	"log"
	"os"
	"testing"

	paho "github.com/eclipse/paho.mqtt.golang"
)

// TestMain turns on paho's own logging with LOAXA_PAHO_DEBUG=1: the way to
// see what the client did around a reconnect when a test fails.
func TestMain(m *testing.M) {
	if os.Getenv("LOAXA_PAHO_DEBUG") != "" {
		paho.ERROR = log.New(os.Stderr, "[ERR] ", log.Lmicroseconds)
		paho.WARN = log.New(os.Stderr, "[WARN] ", log.Lmicroseconds)
		paho.CRITICAL = log.New(os.Stderr, "[CRIT] ", log.Lmicroseconds)
		paho.DEBUG = log.New(os.Stderr, "[DBG] ", log.Lmicroseconds)
	}
	os.Exit(m.Run())
}
