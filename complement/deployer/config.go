package deployer

import (
	"crypto/rand"
	"encoding/hex"
	"encoding/json"
	"os"
	"path/filepath"

	"github.com/matrix-org/complement/client"
)

type jsonObject = map[string]any

// ModulePath is the module this deployer exists to test; every homeserver loads it.
const ModulePath = "synapse_room_connect.RoomConnectModule"

// unlimited is a rate limit no test reaches: tests create users, rooms and
// events in bursts, and throttling would make results depend on timing.
var unlimited = jsonObject{"per_second": 10000, "burst_count": 100000}

// rateLimits covers every client-side limiter of Synapse 1.163 plus inbound
// federation, mirroring the project's Python test harness.
func rateLimits() jsonObject {
	return jsonObject{
		"rc_message":                     unlimited,
		"rc_registration":                unlimited,
		"rc_registration_token_validity": unlimited,
		"rc_login": jsonObject{
			"address": unlimited, "account": unlimited, "failed_attempts": unlimited,
		},
		"rc_admin_redaction":    unlimited,
		"rc_joins":              jsonObject{"local": unlimited, "remote": unlimited},
		"rc_joins_per_room":     unlimited,
		"rc_key_requests":       unlimited,
		"rc_3pid_validation":    unlimited,
		"rc_invites":            jsonObject{"per_room": unlimited, "per_user": unlimited, "per_issuer": unlimited},
		"rc_third_party_invite": unlimited,
		"rc_media_create":       unlimited,
		"rc_presence":           jsonObject{"per_user": unlimited},
		"rc_delayed_event_mgmt": unlimited,
		"rc_room_creation":      unlimited,
		"rc_reports":            unlimited,
		"rc_user_directory":     unlimited,
		"rc_profile":            unlimited,
		"rc_federation": jsonObject{
			"window_size": 1000, "sleep_limit": 10000, "sleep_delay": 0,
			"reject_limit": 100000, "concurrent": 100,
		},
		"federation_rr_transactions_per_room_per_second": 10000,
	}
}

// homeserverFiles are the paths of one homeserver's directory.
type homeserverFiles struct {
	dir string
}

func (f homeserverFiles) config() string     { return filepath.Join(f.dir, "homeserver.yaml") }
func (f homeserverFiles) logConfig() string  { return filepath.Join(f.dir, "log_config.yaml") }
func (f homeserverFiles) log() string        { return filepath.Join(f.dir, "homeserver.log") }
func (f homeserverFiles) output() string     { return filepath.Join(f.dir, "output.log") }
func (f homeserverFiles) signingKey() string { return filepath.Join(f.dir, "signing.key") }
func (f homeserverFiles) tlsCert() string    { return filepath.Join(f.dir, "tls.crt") }
func (f homeserverFiles) tlsKey() string     { return filepath.Join(f.dir, "tls.key") }
func (f homeserverFiles) database() string   { return filepath.Join(f.dir, "homeserver.db") }
func (f homeserverFiles) mediaStore() string { return filepath.Join(f.dir, "media_store") }

// homeserverConfig is the homeserver.yaml of one Synapse: its identity,
// listeners and files, loopback federation, what the pinned Complement's tests
// expect of a homeserver, no rate limits, and the module with moduleConfig
// (no module at all if moduleConfig is nil).
func homeserverConfig(addr address, files homeserverFiles, moduleConfig jsonObject) (jsonObject, error) {
	config, err := serverBasics(addr, files)
	if err != nil {
		return nil, err
	}
	for _, part := range []jsonObject{loopbackFederation(), complementExpectations(), rateLimits()} {
		for k, v := range part {
			config[k] = v
		}
	}
	if moduleConfig != nil {
		config["modules"] = []jsonObject{{"module": ModulePath, "config": moduleConfig}}
	}
	return config, nil
}

// serverBasics is who the server is, where it listens and where its files are.
func serverBasics(addr address, files homeserverFiles) (jsonObject, error) {
	macaroon, err := randomSecret()
	if err != nil {
		return nil, err
	}
	form, err := randomSecret()
	if err != nil {
		return nil, err
	}
	listener := func(port int, tls bool, resources ...string) jsonObject {
		return jsonObject{
			"port": port, "bind_addresses": []string{addr.host}, "type": "http",
			"tls": tls, "x_forwarded": false,
			"resources": []jsonObject{{"names": resources, "compress": false}},
		}
	}
	return jsonObject{
		"server_name":    addr.serverName,
		"public_baseurl": addr.clientURL() + "/",
		"report_stats":   false,
		"listeners": []jsonObject{
			// Complement's images serve federation on the plain port too, and
			// its tests probe federation paths through the client URL.
			listener(addr.clientPort, false, "client", "federation", "keys"),
			listener(addr.fedPort, true, "federation", "keys"),
		},
		"database":             jsonObject{"name": "sqlite3", "args": jsonObject{"database": files.database()}},
		"log_config":           files.logConfig(),
		"media_store_path":     files.mediaStore(),
		"signing_key_path":     files.signingKey(),
		"tls_certificate_path": files.tlsCert(),
		"tls_private_key_path": files.tlsKey(),
		"macaroon_secret_key":  macaroon,
		"form_secret":          form,
		// Hashing at the production cost would dominate user creation.
		"bcrypt_rounds": 4,
		// Previews need Synapse's url-preview extra, which .venv does not have.
		"url_preview_enabled": false,
	}, nil
}

func randomSecret() (string, error) {
	b := make([]byte, 32)
	if _, err := rand.Read(b); err != nil {
		return "", err
	}
	return hex.EncodeToString(b), nil
}

// loopbackFederation lets homeservers and mock servers on loopback federate.
func loopbackFederation() jsonObject {
	return jsonObject{
		// Peers present certificates from Complement's CA or its mock servers'
		// own; the point of these tests is the module, not PKI.
		"federation_verify_certificates": false,
		// Synapse refuses outbound requests to loopback by default; everything
		// here lives on loopback. 1.163 still spells it "whitelist".
		"ip_range_whitelist":          []string{"127.0.0.0/8", "::1/128"},
		"trusted_key_servers":         []any{},
		"suppress_key_server_warning": true,
		// Tests stop, pause and restart homeservers, and mock servers come and
		// go. Synapse's default 10 minute back-off after a failed send would
		// leave a peer unreachable for the rest of the run; seconds suffice.
		"federation": jsonObject{
			"destination_min_retry_interval": "1s",
			"destination_retry_multiplier":   2,
			"destination_max_retry_interval": "10s",
		},
	}
}

// complementExpectations are what the pinned Complement's tests assume of a
// homeserver, as its Synapse image configures it, where Synapse 1.163's
// defaults differ.
func complementExpectations() jsonObject {
	return jsonObject{
		"enable_registration":                      true,
		"enable_registration_without_verification": true,
		// The secret Complement's client uses for admin registration.
		"registration_shared_secret": client.SharedSecret,
		// Its federation library (and so its mock servers) predates room
		// version 12, Synapse 1.163's default; tests that need version 12 ask
		// for it in createRoom.
		"default_room_version": "10",
		// Synapse answers a repeated /sync with the same parameters from a
		// two-minute cache; tests that sync from scratch twice want fresh data.
		"caches": jsonObject{"sync_response_cache_duration": 0},
		// Room directory tests read public rooms without a token and publish
		// rooms as ordinary users, which Synapse now denies by default.
		"allow_public_rooms_without_auth":    true,
		"allow_public_rooms_over_federation": true,
		"room_list_publication_rules":        []jsonObject{{"action": "allow"}},
		// Media is downloaded over the unauthenticated endpoints, which
		// Synapse 1.163 serves only with this off.
		"enable_authenticated_media": false,
		// Key tests expect device names in remote key queries.
		"allow_device_name_lookup_over_federation": true,
		// Admin tests send server notices and expect them from @_server.
		"server_notices": jsonObject{
			"system_mxid_localpart":    "_server",
			"system_mxid_display_name": "Server Notices",
			"room_name":                "Server Notices",
		},
	}
}

// logConfig is a Python logging config: Synapse at INFO and the module at
// DEBUG into homeserver.log, which Destroy prints when a test fails.
func logConfig(files homeserverFiles) jsonObject {
	return jsonObject{
		"version": 1,
		"formatters": jsonObject{"precise": jsonObject{
			"format": "%(asctime)s - %(name)s - %(lineno)d - %(levelname)s - %(request)s - %(message)s",
		}},
		"handlers": jsonObject{"file": jsonObject{
			"class": "logging.FileHandler", "formatter": "precise",
			"filename": files.log(), "encoding": "utf8",
		}},
		"loggers": jsonObject{
			"synapse": jsonObject{"level": "INFO"},
			// Every SQL statement at DEBUG would drown the module's own lines.
			"synapse.storage.SQL":  jsonObject{"level": "INFO"},
			"synapse_room_connect": jsonObject{"level": "DEBUG"},
		},
		"root":                     jsonObject{"level": "INFO", "handlers": []string{"file"}},
		"disable_existing_loggers": false,
	}
}

// writeJSON writes v as JSON, which YAML parsers (Synapse's included) read as is.
func writeJSON(path string, v any) error {
	data, err := json.MarshalIndent(v, "", "  ")
	if err != nil {
		return err
	}
	return os.WriteFile(path, append(data, '\n'), 0o600)
}
