//! Certificates for the TLS tests, made with openssl in a directory of the test's: `ca.crt`
//! (with `ca.key`), `other-ca.crt` (a CA the server's certificate does not chain to), and
//! `server.crt` / `server.key`, signed by `ca` and valid for `localhost` only (not `127.0.0.1`),
//! so that connecting by address is a host-name mismatch.

use std::path::Path;
use std::process::Command;

fn openssl(dir: &Path, args: &[&str]) {
    let output = Command::new("openssl").current_dir(dir).args(args).output().expect("openssl runs");
    assert!(output.status.success(), "openssl {args:?}: {}", String::from_utf8_lossy(&output.stderr));
}

/// An EC P-256 key in `key` and, with `-x509`, a self-signed certificate (else a request).
fn new_key(dir: &Path, key: &str, out: &str, subject: &str, self_signed: bool) {
    let mut args = vec!["req"];
    if self_signed {
        args.extend(["-x509", "-days", "2"]);
    }
    args.extend(["-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-nodes"]);
    args.extend(["-keyout", key, "-out", out, "-subj", subject]);
    openssl(dir, &args);
}

/// Writes the CAs and the server's certificate into `dir` (which must exist).
pub fn generate(dir: &Path) {
    new_key(dir, "ca.key", "ca.crt", "/CN=coupon test CA", true);
    new_key(dir, "other-ca.key", "other-ca.crt", "/CN=coupon test CA", true);
    std::fs::write(dir.join("server.ext"), "subjectAltName=DNS:localhost\n").expect("extensions");
    new_key(dir, "server.key", "server.csr", "/CN=localhost", false);
    openssl(
        dir,
        &[
            "x509",
            "-req",
            "-in",
            "server.csr",
            "-CA",
            "ca.crt",
            "-CAkey",
            "ca.key",
            "-CAcreateserial",
            "-out",
            "server.crt",
            "-days",
            "2",
            "-extfile",
            "server.ext",
        ],
    );
}
