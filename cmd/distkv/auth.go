package main

import (
	"bufio"
	"context"
	"errors"
	"fmt"
	"log/slog"
	"os"
	"slices"
	"strings"
	"time"

	"github.com/spf13/cobra"
	"github.com/spf13/pflag"

	"github.com/distkv/distkv/client"
	"github.com/distkv/distkv/internal/auth"
	"github.com/distkv/distkv/internal/httpapi"
)

// authOptions are the auth flags of `distkv server`.
type authOptions struct {
	enabled          bool
	tokenTTL         time.Duration
	rootPasswordFile string
	// rootPassword is read from rootPasswordFile by httpConfig.
	rootPassword []byte
}

func (o *authOptions) addFlags(f *pflag.FlagSet) {
	f.BoolVar(&o.enabled, "auth", false, "require a token (Authorization: Bearer, from POST /auth/token) or a client certificate on every API request, and check users' permissions")
	f.DurationVar(&o.tokenTTL, "auth-token-ttl", httpapi.DefaultTokenTTL, "how long a token from POST /auth/token is valid (with --auth)")
	f.StringVar(&o.rootPasswordFile, "initial-root-password-file", "", "file holding the password of user root, created by the first start of a cluster with --auth (its first line; ignored once the cluster has users)")
}

// httpConfig returns the API's auth configuration, nil without --auth, and
// reads the root password file.
func (o *authOptions) httpConfig() (*httpapi.AuthConfig, error) {
	if !o.enabled {
		if o.rootPasswordFile != "" {
			return nil, errors.New("--initial-root-password-file needs --auth")
		}
		return nil, nil
	}
	if o.rootPasswordFile != "" {
		b, err := os.ReadFile(o.rootPasswordFile)
		if err != nil {
			return nil, fmt.Errorf("--initial-root-password-file: %w", err)
		}
		pw, _, _ := strings.Cut(string(b), "\n")
		pw = strings.TrimSuffix(pw, "\r")
		if pw == "" || len(pw) > auth.MaxPasswordLen {
			return nil, fmt.Errorf("--initial-root-password-file %s: the first line must be a password of 1 to %d bytes", o.rootPasswordFile, auth.MaxPasswordLen)
		}
		o.rootPassword = []byte(pw)
	}
	return &httpapi.AuthConfig{TokenTTL: o.tokenTTL}, nil
}

// start sets up auth in the cluster if it has none yet (see
// httpapi.BootstrapAuth), in the background; the returned function stops
// it.
func (o *authOptions) start(b backend, logger *slog.Logger) (stop func()) {
	if !o.enabled {
		return func() {}
	}
	ctx, cancel := context.WithCancel(context.Background())
	done := make(chan struct{})
	go func() {
		defer close(done)
		if err := httpapi.BootstrapAuth(ctx, b, o.rootPassword, 0, logger); err != nil && ctx.Err() == nil {
			logger.Error("auth setup failed", "err", err)
		}
	}()
	return func() { cancel(); <-done }
}

// AuthState gives the API the users, roles and token secret of the node's
// state machine.
func (b backend) AuthState() *auth.State { return b.n.KV().Auth() }

var _ httpapi.AuthBackend = backend{}

// credentials are the --user, --password and --token flags of the client
// commands.
type credentials struct {
	user, password, token string
}

func (cr *credentials) addFlags(f *pflag.FlagSet) {
	if f.Lookup("user") != nil {
		return // shared flag variables: added once per command
	}
	f.StringVar(&cr.user, "user", "", "log in as this user (with --password) on a cluster with auth")
	f.StringVar(&cr.password, "password", "", "the password of --user")
	f.StringVar(&cr.token, "token", "", "send this token (from POST /auth/token) on a cluster with auth (default $DISTKV_TOKEN)")
}

// apply gives c the token of --token or $DISTKV_TOKEN, or logs in as --user.
func (cr *credentials) apply(ctx context.Context, c *client.Client) error {
	switch {
	case cr.token != "":
		c.SetToken(cr.token)
	case cr.user != "":
		if cr.password == "" {
			return errors.New("--user needs --password")
		}
		if _, err := c.Login(ctx, cr.user, cr.password); err != nil {
			return fmt.Errorf("log in as %s: %w", cr.user, err)
		}
	case os.Getenv("DISTKV_TOKEN") != "":
		c.SetToken(os.Getenv("DISTKV_TOKEN"))
	}
	return nil
}

// newPassword returns the --new-password flag's value, or reads a line
// from standard input (so that it need not appear on a command line).
func newPassword(flag string) (string, error) {
	if flag != "" {
		return flag, nil
	}
	fmt.Fprint(os.Stderr, "new password: ")
	line, err := bufio.NewReader(os.Stdin).ReadString('\n')
	line = strings.TrimRight(line, "\r\n")
	if line == "" {
		if err == nil {
			err = errors.New("empty")
		}
		return "", fmt.Errorf("reading the new password from standard input: %w", err)
	}
	return line, nil
}

// newAuthCommands returns `distkv user` and `distkv role`.
func newAuthCommands(addFlags func(*cobra.Command) *cobra.Command, mk func() (*client.Client, error)) []*cobra.Command {
	ctx := context.Background()
	out := func(a client.Answer, err error) error {
		if err == nil {
			printIndented(a.Raw)
		}
		return err
	}
	run := func(f func(c *client.Client, args []string) error) func(*cobra.Command, []string) error {
		return func(_ *cobra.Command, args []string) error {
			c, err := mk()
			if err != nil {
				return err
			}
			return f(c, args)
		}
	}

	user := &cobra.Command{Use: "user", Short: "Manage users (needs the root role; a user may change its own password)"}
	var roles []string
	var newPw string
	add := addFlags(&cobra.Command{
		Use: "add NAME [--roles R1,R2] [--new-password P]", Short: "Create a user, or set an existing one's password and roles (the password is read from standard input without --new-password)",
		Args: cobra.ExactArgs(1),
		RunE: run(func(c *client.Client, args []string) error {
			pw, err := newPassword(newPw)
			if err != nil {
				return err
			}
			return out(c.PutUser(ctx, args[0], client.UserUpdate{Password: &pw, Roles: roles, SetRoles: true}))
		}),
	})
	add.Flags().StringSliceVar(&roles, "roles", nil, "the user's roles (root: every right)")
	add.Flags().StringVar(&newPw, "new-password", "", "the new user's password (default: read from standard input)")
	passwd := addFlags(&cobra.Command{
		Use: "passwd NAME [--new-password P]", Short: "Change a user's password (its tokens stop working)",
		Args: cobra.ExactArgs(1),
		RunE: run(func(c *client.Client, args []string) error {
			pw, err := newPassword(newPw)
			if err != nil {
				return err
			}
			return out(c.PutUser(ctx, args[0], client.UserUpdate{Password: &pw}))
		}),
	})
	passwd.Flags().StringVar(&newPw, "new-password", "", "the new password (default: read from standard input)")
	user.AddCommand(add, passwd,
		addFlags(&cobra.Command{
			Use: "set-roles NAME [ROLE...]", Short: "Replace a user's roles (its tokens stop working)", Args: cobra.MinimumNArgs(1),
			RunE: run(func(c *client.Client, args []string) error {
				return out(c.PutUser(ctx, args[0], client.UserUpdate{Roles: args[1:], SetRoles: true}))
			}),
		}),
		addFlags(&cobra.Command{
			Use: "get NAME", Short: "Show a user", Args: cobra.ExactArgs(1),
			RunE: run(func(c *client.Client, args []string) error { return out(c.GetUser(ctx, args[0])) }),
		}),
		addFlags(&cobra.Command{
			Use: "list", Short: "List the users", Args: cobra.NoArgs,
			RunE: run(func(c *client.Client, _ []string) error { return out(c.Users(ctx)) }),
		}),
		addFlags(&cobra.Command{
			Use: "delete NAME", Short: "Delete a user (its tokens stop working)", Args: cobra.ExactArgs(1),
			RunE: run(func(c *client.Client, args []string) error { return out(c.DeleteUser(ctx, args[0])) }),
		}),
	)

	role := &cobra.Command{Use: "role", Short: "Manage roles: key prefixes with read or readwrite access (needs the root role)"}
	role.AddCommand(
		addFlags(&cobra.Command{
			Use: "add NAME", Short: "Create a role without permissions (see grant)", Args: cobra.ExactArgs(1),
			RunE: run(func(c *client.Client, args []string) error { return out(c.PutRole(ctx, args[0], nil)) }),
		}),
		addFlags(&cobra.Command{
			Use: "grant NAME PREFIX read|readwrite", Short: "Give a role access to the keys under PREFIX (\"\" for every key)", Args: cobra.ExactArgs(3),
			RunE: run(func(c *client.Client, args []string) error {
				if _, ok := auth.ParseAccess(args[2]); !ok {
					return fmt.Errorf("access %q: want read or readwrite", args[2])
				}
				r, err := c.GetRole(ctx, args[0])
				if err != nil {
					return err
				}
				perm := client.Permission{Prefix: args[1], Access: args[2]}
				perms := slices.DeleteFunc(r.Permissions, func(p client.Permission) bool { return p.Prefix == perm.Prefix })
				return out(c.PutRole(ctx, args[0], append(perms, perm)))
			}),
		}),
		addFlags(&cobra.Command{
			Use: "revoke NAME PREFIX", Short: "Take a role's access to the keys under PREFIX", Args: cobra.ExactArgs(2),
			RunE: run(func(c *client.Client, args []string) error {
				r, err := c.GetRole(ctx, args[0])
				if err != nil {
					return err
				}
				perms := slices.DeleteFunc(r.Permissions, func(p client.Permission) bool { return p.Prefix == args[1] })
				if len(perms) == len(r.Permissions) {
					return fmt.Errorf("role %s has no permission on prefix %q", args[0], args[1])
				}
				return out(c.PutRole(ctx, args[0], perms))
			}),
		}),
		addFlags(&cobra.Command{
			Use: "get NAME", Short: "Show a role", Args: cobra.ExactArgs(1),
			RunE: run(func(c *client.Client, args []string) error {
				r, err := c.GetRole(ctx, args[0])
				if err == nil {
					printIndented(r.Raw)
				}
				return err
			}),
		}),
		addFlags(&cobra.Command{
			Use: "list", Short: "List the roles", Args: cobra.NoArgs,
			RunE: run(func(c *client.Client, _ []string) error { return out(c.Roles(ctx)) }),
		}),
		addFlags(&cobra.Command{
			Use: "delete NAME", Short: "Delete a role and take it from every user", Args: cobra.ExactArgs(1),
			RunE: run(func(c *client.Client, args []string) error { return out(c.DeleteRole(ctx, args[0])) }),
		}),
	)
	return []*cobra.Command{user, role}
}
