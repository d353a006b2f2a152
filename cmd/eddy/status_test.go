package main

import (
	"encoding/json"
	"fmt"
	"net/http"
	"os"
	"path/filepath"
	"strings"
	"testing"
	"time"
)

// TestE2EStatus: the real binary's /api/status carries the server's own
// sections and those run.go plugs in (streams, mqtt, sensors).
func TestE2EStatus(t *testing.T) {
	dir := t.TempDir()
	port := freePort(t)
	base := fmt.Sprintf("https://127.0.0.1:%d", port)
	d := startEddy(t, "--listen", fmt.Sprintf("127.0.0.1:%d", port), "--data", dir)
	waitHealthy(t, d, base, dir)
	token, err := os.ReadFile(filepath.Join(dir, "token"))
	if err != nil {
		t.Fatal(err)
	}
	client := httpsClient(t, dir)
	var st struct {
		Hostname string `json:"hostname"`
		Version  string `json:"version"`
		Epoch    string `json:"epoch"`
		Log      struct {
			Records int64 `json:"records"`
		} `json:"log"`
		Streams map[string]int64  `json:"streams"`
		MQTT    []json.RawMessage `json:"mqtt"`
		Sensors []struct {
			Name string `json:"name"`
			Kind string `json:"kind"`
			Up   bool   `json:"up"`
		} `json:"sensors"`
	}
	waitUntil(t, 10*time.Second, "a sensor read in /api/status", func() bool {
		req, _ := http.NewRequest(http.MethodGet, base+"/api/status", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(token)))
		resp, err := client.Do(req)
		if err != nil {
			return false
		}
		defer resp.Body.Close()
		return resp.StatusCode == 200 && json.NewDecoder(resp.Body).Decode(&st) == nil && st.Log.Records > 0 && len(st.Sensors) > 0
	})
	if st.Hostname == "" || st.Version == "" || st.Epoch == "" || st.MQTT == nil || len(st.Streams) != 3 ||
		st.Sensors[0].Name != "system" || st.Sensors[0].Kind != "system" {
		t.Fatalf("status: %+v", st)
	}
}
