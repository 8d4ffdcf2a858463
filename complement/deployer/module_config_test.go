package deployer

import (
	"strings"
	"testing"

	"github.com/matrix-org/complement/must"
)

// DeployWithModuleConfig hands its keys to the module: a bot_localpart other
// than the default shows in the module's info endpoint.
func TestDeployerModuleConfig(t *testing.T) {
	if withoutModule() {
		t.Skipf("%s is set: no module to configure", WithoutModuleEnv)
	}
	d := DeployWithModuleConfig(t, 1, map[string]any{"bot_localpart": "configured-ferry"})
	defer d.Destroy(t)
	res := d.UnauthenticatedClient(t, "hs1").MustDo(t, "GET", []string{"_synapse", "client", "org.matrix.msc2923", "info"})
	bot := must.GetJSONFieldStr(t, must.ParseJSON(t, res.Body), "bot_user_id")
	if !strings.HasPrefix(bot, "@configured-ferry:") {
		t.Errorf("bot_user_id = %q, want the configured localpart configured-ferry", bot)
	}
}
