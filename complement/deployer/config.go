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

// homeserverConfig is the homeserver.yaml of one Synapse: what Complement's
// tests expect of a homeserver (open registration without verification,
// Complement's shared registration secret, loopback federation) plus the module.
func homeserverConfig(addr address, files homeserverFiles, moduleConfig jsonObject) (jsonObject, error) {
	secret := func() (string, error) {
		b := make([]byte, 32)
		if _, err := rand.Read(b); err != nil {
			return "", err
		}
		return hex.EncodeToString(b), nil
	}
	macaroon, err := secret()
	if err != nil {
		return nil, err
	}
	form, err := secret()
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
	config := jsonObject{
		"server_name":    addr.serverName,
		"public_baseurl": addr.clientURL() + "/",
		"report_stats":   false,
		"listeners": []jsonObject{
			listener(addr.clientPort, false, "client"),
			// "client" here only for its /.well-known/matrix/server; see planAddresses.
			listener(addr.fedPort, true, "client", "federation", "keys"),
		},
		"database":             jsonObject{"name": "sqlite3", "args": jsonObject{"database": files.database()}},
		"log_config":           files.logConfig(),
		"media_store_path":     files.mediaStore(),
		"signing_key_path":     files.signingKey(),
		"tls_certificate_path": files.tlsCert(),
		"tls_private_key_path": files.tlsKey(),
		// The secret Complement's client uses for admin registration.
		"registration_shared_secret":               client.SharedSecret,
		"macaroon_secret_key":                      macaroon,
		"form_secret":                              form,
		"enable_registration":                      true,
		"enable_registration_without_verification": true,
		// Hashing at the production cost would dominate user creation.
		"bcrypt_rounds": 4,
		// Peers present certificates from Complement's CA or its mock servers' own;
		// the point of these tests is the module, not PKI.
		"federation_verify_certificates": false,
		// Synapse refuses outbound requests to loopback by default; everything
		// here lives on loopback. 1.163 still spells it "whitelist".
		"ip_range_whitelist":          []string{"127.0.0.0/8", "::1/128"},
		"trusted_key_servers":         []any{},
		"suppress_key_server_warning": true,
		"url_preview_enabled":         false,
		// The pinned Complement's federation library (and so its mock servers)
		// predates room version 12, Synapse 1.163's default; tests that need
		// version 12 ask for it in createRoom.
		"default_room_version":   "10",
		"serve_server_wellknown": true,
		// Complement's room directory tests read public rooms without a token.
		"allow_public_rooms_without_auth":    true,
		"allow_public_rooms_over_federation": true,
		"modules":                            []jsonObject{{"module": ModulePath, "config": moduleConfig}},
	}
	for k, v := range rateLimits() {
		config[k] = v
	}
	return config, nil
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
