package deployer

import (
	"crypto/ed25519"
	"crypto/rand"
	"encoding/base64"
	"encoding/hex"
	"fmt"
	"os"
)

// writeSigningKey writes a fresh ed25519 key in the one-line format Synapse's
// signing_key_path expects: "ed25519 <key id> <unpadded base64 seed>".
func writeSigningKey(path string) error {
	_, priv, err := ed25519.GenerateKey(rand.Reader)
	if err != nil {
		return err
	}
	suffix := make([]byte, 3)
	if _, err := rand.Read(suffix); err != nil {
		return err
	}
	seed := base64.RawStdEncoding.EncodeToString(priv.Seed())
	line := fmt.Sprintf("ed25519 a_%s %s\n", hex.EncodeToString(suffix), seed)
	return os.WriteFile(path, []byte(line), 0o600)
}
