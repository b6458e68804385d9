//! The launchers against the real binaries: a private PostgreSQL cluster and a
//! redis-server start, answer, restart on the same port and data, and leave no process.

use std::io::{Read, Write};
use std::net::TcpStream;
use std::process::Command;
use std::time::Duration;

use nix::sys::signal::Signal;
use target::process::postgres::{Postgres, PostgresOptions};
use target::process::redis::{Redis, RedisOptions};
use target::process::{find_binary, ChildProcess, ProcessError};
use target::stack::pid_alive;

fn redis_command(port: u16, command: &str) -> String {
    let mut stream = TcpStream::connect(("127.0.0.1", port)).expect("connect to redis");
    stream
        .set_read_timeout(Some(Duration::from_secs(5)))
        .unwrap();
    stream
        .write_all(format!("{command}\r\n").as_bytes())
        .unwrap();
    let mut buf = [0u8; 256];
    let n = stream.read(&mut buf).unwrap();
    String::from_utf8_lossy(&buf[..n]).into_owned()
}

#[test]
fn postgres_starts_serves_the_database_and_stops() {
    let pg = Postgres::start(PostgresOptions::default()).expect("postgres starts");
    let pid = pg.pid();
    assert!(pid_alive(pid));
    assert_eq!(
        pg.url(),
        format!("postgres://postgres@127.0.0.1:{}/slolab", pg.port())
    );
    assert!(pg.data_dir().join("PG_VERSION").exists());
    // The database exists: a real client (sqlx) connects to the url and queries it.
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let url = pg.url();
    let db: String = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url)
            .await
            .expect("sqlx connects");
        sqlx::query_scalar("SELECT current_database()")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(db, "slolab");
    pg.stop();
    assert!(pg.child().try_status().is_some(), "stop waits for the exit");
    assert!(!pid_alive(pid));
}

#[test]
fn postgres_restarts_on_the_same_port_and_data() {
    let dir = tempfile::tempdir().unwrap();
    std::fs::set_permissions(
        dir.path(),
        std::os::unix::fs::PermissionsExt::from_mode(0o755),
    )
    .unwrap();
    let data = dir.path().join("data");
    let opts = PostgresOptions {
        data_dir: Some(data.clone()),
        ..PostgresOptions::default()
    };
    let rt = tokio::runtime::Builder::new_current_thread()
        .enable_all()
        .build()
        .unwrap();
    let first = Postgres::start(opts.clone()).expect("first start");
    let port = first.port();
    let url = first.url();
    rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&url).await.unwrap();
        sqlx::raw_sql("CREATE TABLE kept (v int); INSERT INTO kept VALUES (42)")
            .execute(&mut conn)
            .await
            .unwrap();
    });
    let first_pid = first.pid();
    drop(first);
    assert!(!pid_alive(first_pid));
    assert!(data.join("PG_VERSION").exists(), "a given data dir is kept");

    let second = Postgres::start(PostgresOptions {
        port: Some(port),
        ..opts
    })
    .expect("restart on the same port and data");
    assert_eq!(second.port(), port);
    let v: i32 = rt.block_on(async {
        use sqlx::Connection;
        let mut conn = sqlx::PgConnection::connect(&second.url()).await.unwrap();
        sqlx::query_scalar("SELECT v FROM kept")
            .fetch_one(&mut conn)
            .await
            .unwrap()
    });
    assert_eq!(v, 42);
}

#[test]
fn redis_starts_answers_and_stops_on_drop() {
    let redis = Redis::start(RedisOptions::default()).expect("redis starts");
    let pid = redis.pid();
    let port = redis.port();
    assert_eq!(redis.url(), format!("redis://127.0.0.1:{port}/"));
    assert_eq!(redis_command(port, "SET k v"), "+OK\r\n");
    assert_eq!(redis_command(port, "GET k"), "$1\r\nv\r\n");
    // Persistence is off: nothing is ever saved.
    assert!(redis_command(port, "CONFIG GET save").contains("$0\r\n"));
    let child = redis.child().clone();
    drop(redis);
    assert!(child.try_status().is_some());
    assert!(!pid_alive(pid));
}

#[test]
fn redis_restarts_on_the_same_port_after_a_kill() {
    let redis = Redis::start(RedisOptions::default()).unwrap();
    let port = redis.port();
    assert!(redis.child().signal(Signal::SIGKILL));
    let status = redis
        .child()
        .wait_timeout(Duration::from_secs(30))
        .expect("killed redis is reaped");
    assert!(!status.success());
    // Signalling an exited child is refused rather than hitting a recycled pid.
    assert!(!redis.child().signal(Signal::SIGTERM));
    let again = Redis::start(RedisOptions {
        port: Some(port),
        ..RedisOptions::default()
    })
    .expect("restart on the same port");
    assert_eq!(redis_command(again.port(), "PING"), "+PONG\r\n");
}

#[test]
fn a_port_already_taken_is_reported_with_the_log() {
    let holder = std::net::TcpListener::bind("127.0.0.1:0").unwrap();
    let port = holder.local_addr().unwrap().port();
    let err = Redis::start(RedisOptions {
        port: Some(port),
        ..RedisOptions::default()
    })
    .expect_err("the port is taken");
    match err {
        // A fixed port is not retried, so the caller sees the variant itself.
        ProcessError::AddrInUse { tail, .. } => assert!(tail.contains("in use"), "{tail}"),
        other => panic!("unexpected error: {other}"),
    }
}

#[test]
fn a_missing_binary_names_the_debian_package() {
    let err = find_binary("surely-not-a-binary-slolab", "some-package", &[]).unwrap_err();
    let message = err.to_string();
    assert!(message.contains("surely-not-a-binary-slolab"), "{message}");
    assert!(
        message.contains("apt-get install some-package"),
        "{message}"
    );
}

#[test]
fn a_child_leads_its_own_process_group_and_stop_reaps_it() {
    let mut command = Command::new("sleep");
    command.arg("30");
    let child = ChildProcess::spawn("sleeper", command).unwrap();
    // Its own group: a terminal's Ctrl-C reaches the supervisor only, which then
    // stops the children in order.
    let stat = chaos::ProcStat::read(child.pid()).unwrap();
    assert_eq!(stat.pgrp, child.pid());
    let exit = child
        .stop(Signal::SIGTERM, Duration::from_secs(10))
        .expect("stopped");
    assert!(!exit.success());
    assert!(!pid_alive(child.pid()));
    // Stopping again is a no-op that reports the same exit.
    assert_eq!(
        child.stop(Signal::SIGTERM, Duration::from_secs(1)),
        Some(exit)
    );
}
