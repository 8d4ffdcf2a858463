package deployer

import (
	"fmt"
	"strings"

	"github.com/matrix-org/complement/client"
	"github.com/matrix-org/complement/ct"
	"github.com/matrix-org/complement/helpers"
)

// defaultPassword is what Register uses when a test gives none; Complement's
// tests log in again with client.Password, so any valid password will do.
const defaultPassword = "complement_meets_min_password_req"

func (d *deployment[C]) newClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return &client.CSAPI{
		BaseURL:          d.server(t, hsName).addr.clientURL(),
		Client:           client.NewLoggedClient(t, hsName, nil),
		SyncUntilTimeout: syncUntilTimeout,
		Debug:            d.debug,
	}
}

func (d *deployment[C]) UnauthenticatedClient(t ct.TestLike, hsName string) *client.CSAPI {
	t.Helper()
	return d.newClient(t, hsName)
}

func (d *deployment[C]) Register(t ct.TestLike, hsName string, opts helpers.RegistrationOpts) *client.CSAPI {
	t.Helper()
	c := d.newClient(t, hsName)
	c.Password = opts.Password
	if c.Password == "" {
		c.Password = defaultPassword
	}
	// Unique within the deployment, which has a database of its own.
	localpart := fmt.Sprintf("user-%d", d.localparts.Add(1))
	if opts.LocalpartSuffix != "" {
		localpart += "-" + opts.LocalpartSuffix
	}
	if opts.IsAdmin {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterSharedSecret(t, localpart, c.Password, true)
	} else {
		c.UserID, c.AccessToken, c.DeviceID = c.RegisterUser(t, localpart, c.Password)
	}
	d.tokensMu.Lock()
	d.tokens[c.UserID] = c.AccessToken
	d.tokensMu.Unlock()
	return c
}

func (d *deployment[C]) Login(t ct.TestLike, hsName string, existing *client.CSAPI, opts helpers.LoginOpts) *client.CSAPI {
	t.Helper()
	localpart, _, ok := strings.Cut(strings.TrimPrefix(existing.UserID, "@"), ":")
	if !ok || !strings.HasPrefix(existing.UserID, "@") {
		ct.Fatalf(t, "deployer: Login: client has no valid user ID: %q", existing.UserID)
	}
	c := d.newClient(t, hsName)
	c.Password = existing.Password
	if opts.Password != "" {
		c.Password = opts.Password
	}
	var loginOpts []client.LoginOpt
	if opts.DeviceID != "" {
		loginOpts = append(loginOpts, client.WithDeviceID(opts.DeviceID))
	}
	c.UserID, c.AccessToken, c.DeviceID = c.LoginUser(t, localpart, c.Password, loginOpts...)
	return c
}

// AppServiceUser returns a client for a user whose token this deployment
// knows. No application services are configured, so only users registered
// through this deployment qualify.
func (d *deployment[C]) AppServiceUser(t ct.TestLike, hsName, userID string) *client.CSAPI {
	t.Helper()
	d.tokensMu.Lock()
	token, ok := d.tokens[userID]
	d.tokensMu.Unlock()
	if !ok {
		ct.Fatalf(t, "deployer: no application services here, and %s was not registered through this deployment", userID)
	}
	c := d.newClient(t, hsName)
	c.UserID, c.AccessToken = userID, token
	return c
}
