// Package image is urun's image store: a containers-storage store
// (go.podman.io/storage) with the overlay driver, filled by
// containers/image (go.podman.io/image/v5) from registries, OCI layouts
// and archives.
//
// # Model
//
// A Store is opened with Open(ctx, Options) inside urun's user namespace:
// the caller is uid 0 there (subordinate ids mapped, as podman's rootless
// re-exec), or real root, so that layer files keep the owners the image
// gives them. Open tells containers-storage and containers/image when they
// run inside a user namespace (the _CONTAINERS_USERNS_CONFIGURED and
// _CONTAINERS_ROOTLESS_UID variables podman sets), so the overlay driver
// writes user.overlay.* xattrs and per-user paths are the user's.
//
// The graph root defaults to $XDG_DATA_HOME/urun/storage, the run root to
// $XDG_RUNTIME_DIR/urun (or /tmp/urun-UID); both, the mount program and
// the registry configuration can be set in Options or in urun.conf (see
// ConfigFile, LoadConfig). The overlay driver's mount_program is ufs, so
// Storage().Mount of a container works as podman's does, through ufs.
// With a mount_program, containers-storage stores layers with aufs-format
// whiteouts (.wh.NAME, .wh..wh..opq), which ufs honours in its lowers.
//
// Images come in through Pull (docker references resolved as podman
// does: registries.conf short-name aliases, unqualified-search
// registries, localhost/; or TRANSPORT:REF for oci:, oci-archive:,
// docker-archive:, docker://), Import (a root file system tarball) and
// Load (docker-archive or oci-archive); they leave through Save. Resolve
// finds a stored image by ID, ID prefix, name, short name or
// name@digest; Get pulls by a PullPolicy. Images, Inspect, Tag, Untag and
// Remove (which removes only the layers nothing else uses) manage them.
//
// For running a container, the runtime does not use Storage().Mount: it
// creates a container record with NewContainer and mounts the union
// itself (the fusefs package) from Container.Lowers (image layers,
// topmost first), Upper and Work, so the FUSE server lives and dies with
// the container; Container.Config is the image's default process
// (Entrypoint, Cmd, Env, WorkingDir, User). RemoveContainer deletes the
// record and its writable layer. A container removed when it ends (--rm)
// needs no record: a Lease holds the image while it runs (the lock
// protocol is package image/lease, which links no store), and
// LookupLocal reads the image's layers and config from the store's
// files, outside the user namespace and without opening the store, so
// that the CLI can hand them to a runtime binary that links no store.
//
// Some containers-storage work runs in a re-executed copy of the binary:
// main and TestMain call Init first.
//
// # Interruption and concurrency
//
// containers/image stages blobs in GRAPHROOT/tmp/pull-PID and verifies
// each digest before a layer is committed; the image record is written
// last. An interrupted pull (cancelled context, network cut, SIGKILL)
// therefore stores no image; complete layers it committed are reused by
// the next pull, and the next Open removes the staging directory of a
// process that died. containers-storage locks its files, so several
// processes may pull into one store at once: the same image pulled twice
// is stored once.
//
// # Locks
//
// containers-storage serialises access to its layer, image and container
// stores with file locks (shared between processes), taken and released
// inside each call; Store methods never hold one across calls. The one
// lock of this package, openMu, guards the count of Stores open on each
// graph root (containers-storage shares one store per root in a process,
// and the last Close shuts it down); nothing is taken while holding it.
//
// # Errors
//
// Errors name the object and wrap the cause; match the sentinels of
// errors.go (ErrNotFound, ErrInUse, ErrNoUfs, ErrBadReference,
// ErrContainerNotFound) and containers-storage's with errors.Is. A blob
// whose digest does not match is reported with its layer digest and the
// registry.
package image
