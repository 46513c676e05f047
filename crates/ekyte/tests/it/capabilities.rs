//! What the credentials allow, and that a disallowed operation sends nothing.

use domain::{EkyteNoteId, EkyteTaskId, EkyteWorkspaceId, FieldChange, FieldValue, TaskStatus};
use ports::ApiError;
use ports::ekyte::{Capabilities, EkyteApi, NoteContent, WorkspaceTarget};

use crate::support::Env;

fn unsupported<T: std::fmt::Debug>(r: Result<T, ApiError>) {
    match r {
        Err(ApiError::Unsupported { operation }) => assert!(operation.contains("MCP token")),
        other => panic!("expected Unsupported, got {other:?}"),
    }
}

#[tokio::test]
async fn without_an_mcp_token_updates_are_unsupported_and_send_nothing() {
    let env = Env::start(false).await;
    let (a, s) = (&env.adapter, &env.scope);
    assert_eq!(
        a.capabilities(s).await.unwrap(),
        Capabilities::api_key_only()
    );
    env.sb.counters().reset();

    let task = EkyteTaskId::new(env.co.workspace_id as u64).unwrap();
    let ws = EkyteWorkspaceId::new(env.co.workspace_id as u64).unwrap();
    let title = FieldChange {
        field: "title",
        from: FieldValue::Text(None),
        to: FieldValue::Text(Some("x".into())),
    };
    let title = [title];
    let target = crate::support::target_of(&crate::support::some_task(), &title);
    unsupported(a.update_task(s, task, &title, &target).await);
    unsupported(a.set_task_status(s, task, TaskStatus::Completed).await);
    unsupported(a.create_comment(s, task, "<div>x</div>").await);
    for active in [true, false] {
        let target = WorkspaceTarget {
            name: "x".into(),
            active,
            external: None,
        };
        unsupported(a.update_workspace(s, ws, &target).await);
    }
    unsupported(
        a.update_note(
            s,
            EkyteNoteId::new(1).unwrap(),
            &NoteContent {
                title: "t".into(),
                html: "<div>x</div>".into(),
            },
        )
        .await,
    );
    unsupported(a.mcp_identity(s).await);
    let snap = env.sb.counters().snapshot();
    assert_eq!(snap.total_requests(), 0, "{snap:#?}");
}

#[tokio::test]
async fn with_an_mcp_token_everything_is_allowed() {
    let env = Env::start(true).await;
    assert_eq!(
        env.adapter.capabilities(&env.scope).await.unwrap(),
        Capabilities::with_mcp()
    );
    // Capabilities come from the credential store alone.
    assert_eq!(env.requests(), 0);
}

#[tokio::test]
async fn no_credentials_is_unauthorized() {
    let env = Env::start(true).await;
    use ports::store::CredentialStore;
    env.creds
        .delete(&env.scope.tenant.id, ports::store::Provider::Ekyte)
        .await
        .unwrap();
    let err = env.adapter.capabilities(&env.scope).await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
    let err = env.adapter.list_workspaces(&env.scope).await.unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
    assert_eq!(env.requests(), 0);
}

#[tokio::test]
async fn a_rejected_api_key_is_unauthorized_without_the_key_in_the_message() {
    let env = Env::start(false).await;
    env.creds.set("wrong-key-0123456789", None);
    let err = env.adapter.list_workspaces(&env.scope).await.unwrap_err();
    match &err {
        ApiError::Unauthorized { message } => assert!(!message.contains("wrong-key-0123456789")),
        other => panic!("{other:?}"),
    }
    // 401 is not retried.
    assert_eq!(
        env.sb
            .counters()
            .snapshot()
            .route_total("GET", "/v1.0/workspaces"),
        1
    );
}
