//! Deployed as the README says (a privileged role migrates and enables, the application runs as
//! its own role), each missing grant is an error that names the grant to run, and the grants
//! the README lists are enough.
mod common;

use audit_logs_core::{migrate, AuditLogs, ConnectOptions, Error, TableRef, TrackingOptions};

async fn as_role(f: &common::Fixture, role: &str) -> AuditLogs {
    AuditLogs::connect(&f.db.url_for(role)).await.unwrap()
}

#[tokio::test]
async fn status_as_the_application_needs_audit_reader_and_names_it() {
    let f = common::migrated().await;
    let app = f.db.create_role("app").await.unwrap();

    let err = as_role(&f, &app).await.status().await.unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");
    assert!(
        err.to_string()
            .contains(&format!("grant audit_reader to {app}")),
        "{err}"
    );

    f.sql()
        .await
        .batch_execute(&format!("grant audit_reader to {app}"))
        .await
        .unwrap();
    let status = as_role(&f, &app).await.status().await.unwrap();
    assert!(status
        .migrations
        .iter()
        .all(|m| m.state == migrate::MigrationState::Applied));
}

#[tokio::test]
async fn a_v6_install_upgrades_to_a_status_the_application_can_read() {
    let f = common::empty().await;
    let options = ConnectOptions::parse(&f.db.url).unwrap();
    let until_v6 = migrate::MigrateOptions {
        until: Some(6),
        ..Default::default()
    };
    migrate::run(&options, &until_v6).await.unwrap();
    let app = f.db.create_role("app").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!(
            "create table users (id int primary key, email text);
             select audit.enable_tracking('users');
             insert into users values (1, 'a@x.io');
             grant audit_reader to {app};"
        ))
        .await
        .unwrap();
    // As V6 left it: the reader reads the log but not which migrations ran.
    let err = as_role(&f, &app).await.status().await.unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");

    f.audit.migrate(false).await.unwrap();
    let status = as_role(&f, &app).await.status().await.unwrap();
    assert!(status
        .migrations
        .iter()
        .all(|m| m.state == migrate::MigrationState::Applied));
    assert_eq!(f.row_changes().await.len(), 1, "the history is kept");
}

#[tokio::test]
async fn maintenance_without_audit_maintainer_names_the_grant() {
    let f = common::migrated().await;
    let app = f.db.create_role("app").await.unwrap();
    f.sql()
        .await
        .batch_execute(&format!("grant audit_reader to {app}"))
        .await
        .unwrap();
    let audit = as_role(&f, &app).await;
    let sealed = audit
        .client()
        .await
        .unwrap()
        .query("select audit.seal()", &[])
        .await;
    let err = Error::from(sealed.unwrap_err());
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");
    assert!(
        err.to_string().contains("grant audit_maintainer to"),
        "{err}"
    );

    f.sql()
        .await
        .batch_execute(&format!("grant audit_maintainer to {app}"))
        .await
        .unwrap();
    audit
        .client()
        .await
        .unwrap()
        .query("select audit.seal()", &[])
        .await
        .unwrap();
}

#[tokio::test]
async fn enable_by_a_migrating_role_that_does_not_own_the_table_names_the_owner_and_the_grant() {
    let f = common::migrated().await;
    let app = f.db.create_role("app").await.unwrap();
    let admin = f.db.create_role("admin").await.unwrap();
    // A managed database's admin: not a superuser, acting for the audit schema's owner.
    let owner = ConnectOptions::parse(&f.db.url).unwrap().user().to_owned();
    f.sql()
        .await
        .batch_execute(&format!(
            "grant {owner} to {admin};
             grant create on schema public to {app};"
        ))
        .await
        .unwrap();
    f.connect_as(&app)
        .await
        .batch_execute("create table orders (id int primary key, total int)")
        .await
        .unwrap();

    let admin_audit = as_role(&f, &admin).await;
    let err = admin_audit
        .enable_tracking(&TableRef::from("orders"), &TrackingOptions::default())
        .await
        .unwrap_err();
    assert_eq!(err.code(), "AUDIT_LOGS_PERMISSION_DENIED", "{err}");
    assert!(
        err.to_string().contains(&format!("its owner ({app})")),
        "{err}"
    );
    assert!(
        err.to_string().contains(&format!("grant {app} to {admin}")),
        "{err}"
    );

    // The grant it names is the way out.
    f.sql()
        .await
        .batch_execute(&format!("grant {app} to {admin}"))
        .await
        .unwrap();
    admin_audit
        .enable_tracking(&TableRef::from("orders"), &TrackingOptions::default())
        .await
        .unwrap();
    f.connect_as(&app)
        .await
        .batch_execute("insert into orders values (1, 10)")
        .await
        .unwrap();
    assert_eq!(f.row_changes().await.len(), 1);
}
