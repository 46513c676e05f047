//! The MCP token's identity is checked before the first write: eKyte serves a malformed token
//! as an anonymous caller without error (API.md §2.2).

use domain::{EkyteTaskId, FieldChange, FieldValue};
use ports::ApiError;
use ports::ekyte::EkyteApi;

use crate::support::Env;

fn retitle(to: &str) -> [FieldChange; 1] {
    [FieldChange {
        field: "title",
        from: FieldValue::Text(None),
        to: FieldValue::Text(Some(to.into())),
    }]
}

async fn assert_refused(env: &Env, token: &str) {
    let c = env.company();
    let task = env
        .sb
        .create_task(
            c,
            sandbox::ekyte::NewTask::new(env.co.workspace_id, env.co.task_type_id, "Original"),
        )
        .unwrap();
    env.creds.set(&env.co.api_key, Some(token));
    env.sb.counters().reset();
    let id = EkyteTaskId::new(task as u64).unwrap();

    let err = env
        .adapter
        .update_task(
            &env.scope,
            id,
            &retitle("Escrito por anônimo"),
            &crate::support::target_of(
                &crate::support::some_task(),
                &retitle("Escrito por anônimo"),
            ),
        )
        .await
        .unwrap_err();
    match &err {
        ApiError::Unauthorized { message } => {
            assert!(message.contains("anonymous"), "{message}");
            assert!(message.contains("nothing was written"), "{message}");
            assert!(!message.contains(token), "the token leaked: {message}");
        }
        other => panic!("expected Unauthorized, got {other:?}"),
    }
    let snap = env.sb.counters().snapshot();
    assert_eq!(snap.event("mcp_tool:get_current_user"), 1);
    assert_eq!(snap.event("mcp_tool:update_task"), 0);
    assert_eq!(snap.event("mcp_anonymous_write"), 0);
    assert_eq!(env.sb.task(c, task).unwrap().title, "Original");

    // The verdict is kept for this token: the next write fails without asking again.
    let before = env.requests();
    let err = env
        .adapter
        .create_comment(&env.scope, id, "<div>x</div>")
        .await
        .unwrap_err();
    assert!(matches!(err, ApiError::Unauthorized { .. }), "{err:?}");
    assert_eq!(env.requests(), before);
    assert!(env.sb.task(c, task).unwrap().comments.is_empty());

    // Reads the API key can serve still work.
    let read = env.adapter.get_task(&env.scope, id).await.unwrap();
    assert_eq!(read.task.title.as_deref(), Some("Original"));

    // A corrected token is checked afresh and works.
    env.creds
        .set(&env.co.api_key, env.co.admin.mcp_token.as_deref());
    env.adapter
        .update_task(
            &env.scope,
            id,
            &retitle("Corrigido"),
            &crate::support::target_of(&crate::support::some_task(), &retitle("Corrigido")),
        )
        .await
        .unwrap();
    assert_eq!(env.sb.task(c, task).unwrap().title, "Corrigido");
}

#[tokio::test]
async fn a_token_that_matches_no_one_writes_nothing() {
    let env = Env::start(true).await;
    assert_refused(&env, "not-a-real-token-0000000000").await;
}

#[tokio::test]
async fn a_pasted_url_is_anonymous_inside_the_company_and_writes_nothing() {
    // The simulator lets this anonymous session write to the whole company: only the
    // identity check stands between it and the data.
    let env = Env::start(true).await;
    let url = env.sb.mcp_url(env.co.admin.mcp_token.as_deref().unwrap());
    assert_refused(&env, &url).await;
}

#[tokio::test]
async fn the_identity_is_the_tokens_owner_also_over_sse() {
    let env = Env::start(true).await;
    // The simulator answers MCP as SSE events when asked to.
    env.sb.set_mcp_prefer_sse(true);
    let who = env.adapter.mcp_identity(&env.scope).await.unwrap();
    assert_eq!(who.email, env.co.admin.email);
    assert_eq!(who.user_id, env.co.admin.id.to_string());
    let task = env
        .sb
        .create_task(
            env.company(),
            sandbox::ekyte::NewTask::new(env.co.workspace_id, env.co.task_type_id, "SSE"),
        )
        .unwrap();
    let id = EkyteTaskId::new(task as u64).unwrap();
    env.adapter
        .create_comment(&env.scope, id, "<div>via SSE</div>")
        .await
        .unwrap();
    assert_eq!(env.sb.task(env.company(), task).unwrap().comments.len(), 1);
}
