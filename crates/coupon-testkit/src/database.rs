//! A PostgreSQL database per test.
//!
//! The first test of a run builds a template database (named after a hash of the migrations, so
//! a changed migration gets a new template) and every test clones it with
//! `CREATE DATABASE … TEMPLATE`. nextest runs each test in its own process: the template is built
//! under a session advisory lock, into a scratch name that is renamed when complete, so concurrent
//! processes neither build it twice nor see a half-migrated one.

use std::hash::{DefaultHasher, Hash, Hasher};

use coupon_runtime::settings::{DatabaseSettings, Settings};
use diesel_async::{AsyncConnection, AsyncMigrationHarness, AsyncPgConnection, RunQueryDsl};
use diesel_migrations::{EmbeddedMigrations, MigrationHarness, embed_migrations};
use secrecy::{ExposeSecret, SecretString};

const MIGRATIONS: EmbeddedMigrations = embed_migrations!("../../migrations");
/// Every test database starts with this prefix; `just test` drops leftovers of earlier runs.
pub const TEST_DB_PREFIX: &str = "coupon_t_";
const TEMPLATE_LOCK: i64 = 0x636f_7570_6f6e; // "coupon"

/// A database created for one test.
#[derive(Debug, Clone)]
pub struct TestDatabase {
    name: String,
    server: DatabaseSettings,
}

impl TestDatabase {
    /// A database with every migration applied.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable or a migration fails.
    pub async fn migrated() -> Self {
        let server = server_settings();
        let mut admin = admin_connection(&server).await;
        let template = ensure_template(&server, &mut admin).await;
        let name = format!("{TEST_DB_PREFIX}{}", crate::unique_suffix());
        exec(&mut admin, &format!("CREATE DATABASE \"{name}\" TEMPLATE \"{template}\"")).await;
        Self { name, server }
    }

    /// A database with no schema at all (for migration tests).
    ///
    /// # Panics
    /// When PostgreSQL is unreachable.
    pub async fn empty() -> Self {
        let server = server_settings();
        let mut admin = admin_connection(&server).await;
        let name = format!("{TEST_DB_PREFIX}{}", crate::unique_suffix());
        exec(&mut admin, &format!("CREATE DATABASE \"{name}\"")).await;
        Self { name, server }
    }

    pub fn name(&self) -> &str {
        &self.name
    }

    /// Connection string of this database.
    pub fn connection_string(&self) -> SecretString {
        self.server.connection_string_for(&self.name)
    }

    /// A direct connection, for tests that assert on rows.
    ///
    /// # Panics
    /// When PostgreSQL is unreachable.
    pub async fn connect(&self) -> AsyncPgConnection {
        match AsyncPgConnection::establish(self.connection_string().expose_secret()).await {
            Ok(c) => c,
            Err(e) => panic!("cannot connect to test database {}: {e}", self.name),
        }
    }
}

fn server_settings() -> DatabaseSettings {
    match Settings::load() {
        Ok(s) => s.database,
        Err(e) => panic!("test process settings are invalid: {e}"),
    }
}

async fn admin_connection(server: &DatabaseSettings) -> AsyncPgConnection {
    let conn_str = server.connection_string_for("postgres");
    match AsyncPgConnection::establish(conn_str.expose_secret()).await {
        Ok(c) => c,
        Err(e) => panic!(
            "PostgreSQL at {}:{} is not reachable ({e}); start the stack with `just services`",
            server.host, server.port
        ),
    }
}

async fn ensure_template(server: &DatabaseSettings, admin: &mut AsyncPgConnection) -> String {
    let template = format!("coupon_tmpl_{:016x}", migrations_hash());
    exec(admin, &format!("SELECT pg_advisory_lock({TEMPLATE_LOCK})")).await;
    if !database_exists(admin, &template).await {
        let building = format!("{template}_building");
        exec(admin, &format!("DROP DATABASE IF EXISTS \"{building}\"")).await;
        exec(admin, &format!("CREATE DATABASE \"{building}\"")).await;
        migrate_on_own_runtime(server.connection_string_for(&building));
        exec(admin, &format!("ALTER DATABASE \"{building}\" RENAME TO \"{template}\"")).await;
    }
    exec(admin, &format!("SELECT pg_advisory_unlock({TEMPLATE_LOCK})")).await;
    template
}

/// Runs the migrations on a thread with its own multi-threaded runtime: diesel's migration harness
/// is synchronous (diesel-async runs it under `block_in_place`), and tests may run on actix's or
/// tokio's current-thread runtime. Returns once the connection is closed, so the database can be
/// renamed and cloned.
fn migrate_on_own_runtime(conn_str: SecretString) {
    let outcome = std::thread::spawn(move || {
        let runtime = tokio::runtime::Builder::new_multi_thread().worker_threads(1).enable_all().build()?;
        runtime.block_on(async {
            let conn = AsyncPgConnection::establish(conn_str.expose_secret()).await?;
            let mut harness = AsyncMigrationHarness::new(conn);
            harness.run_pending_migrations(MIGRATIONS)?;
            Ok::<_, Box<dyn std::error::Error + Send + Sync>>(())
        })
    })
    .join();
    match outcome {
        Ok(Ok(())) => {}
        Ok(Err(e)) => panic!("migrations failed on the test template: {e}"),
        Err(_) => panic!("the migration thread panicked"),
    }
}

async fn database_exists(admin: &mut AsyncPgConnection, name: &str) -> bool {
    #[derive(diesel::QueryableByName)]
    struct Count {
        #[diesel(sql_type = diesel::sql_types::BigInt)]
        n: i64,
    }
    let count: Count = match diesel::sql_query("SELECT count(*) AS n FROM pg_database WHERE datname = $1")
        .bind::<diesel::sql_types::Text, _>(name)
        .get_result(admin)
        .await
    {
        Ok(c) => c,
        Err(e) => panic!("cannot list databases: {e}"),
    };
    count.n > 0
}

async fn exec(conn: &mut AsyncPgConnection, sql: &str) {
    if let Err(e) = diesel::sql_query(sql).execute(conn).await {
        panic!("{sql}: {e}");
    }
}

/// Identity of the migration set: the path and SQL of every migration file. Tests always run
/// from the source tree, so the directory the migrations were embedded from is there to read.
fn migrations_hash() -> u64 {
    let dir = std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../../migrations");
    let mut files = Vec::new();
    let entries = match std::fs::read_dir(&dir) {
        Ok(e) => e,
        Err(e) => panic!("cannot read {}: {e}", dir.display()),
    };
    for entry in entries.flatten() {
        for file in ["up.sql", "down.sql"] {
            let path = entry.path().join(file);
            if let Ok(sql) = std::fs::read_to_string(&path) {
                files.push((entry.file_name().to_string_lossy().into_owned(), file, sql));
            }
        }
    }
    files.sort();
    let mut hasher = DefaultHasher::new();
    files.hash(&mut hasher);
    hasher.finish()
}
