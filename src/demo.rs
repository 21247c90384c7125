//! `--demo`: sample agents and conversations, so a fresh install has something to show.
//! Safe to run on every start: agents are created once, messages carry fixed external ids.

use anyhow::Context;

use crate::model::{ChannelKind, EmailAddress, Identity, MessageText, Presence, Skill, Team};
use crate::services::{Services, hash_token, new_token, write_private};
use crate::store::{InboundMessage, NewAgent, Role, SenderProfile};

/// Name, email, skills, team, presence.
const AGENTS: &[(&str, &str, &[&str], &str, Presence)] = &[
    (
        "Ada Lovelace",
        "ada@example.com",
        &["billing", "lang:en"],
        "billing",
        Presence::Online,
    ),
    (
        "Grace Hopper",
        "grace@example.com",
        &["technical", "lang:en"],
        "technical",
        Presence::Online,
    ),
    (
        "Linus Pauling",
        "linus@example.com",
        &["billing"],
        "billing",
        Presence::Away,
    ),
];

/// Every demo account signs in with this password (a demo, never a real install).
pub const DEMO_PASSWORD: &str = "baton-demo-password";

const CONVERSATIONS: &[(&str, &str, &str)] = &[
    ("demo-customer-1", "Maya", "What are your opening hours?"),
    ("demo-customer-2", "Tom", "I forgot my password"),
    (
        "demo-customer-3",
        "Priya",
        "My parcel never arrived. I want to talk to a human.",
    ),
    (
        "demo-customer-4",
        "Jonas",
        "How much does the premium plan cost?",
    ),
    (
        "demo-customer-5",
        "Lea",
        "Can I speak to a real person please?",
    ),
];

/// Seeds the demo data.
pub async fn seed(services: &Services) -> anyhow::Result<()> {
    let store = &services.store;
    if store.list_agents().await?.is_empty() {
        let password = crate::model::Password::parse(DEMO_PASSWORD)?;
        let demo_hash = crate::accounts::hash_password(&password).await?;
        crate::accounts::ensure_admin(
            store,
            EmailAddress::parse("admin@example.com")?,
            "Demo Admin",
            &password,
        )
        .await?;
        store
            .create_user(crate::store::NewUser {
                email: EmailAddress::parse("mia@example.com")?,
                name: "Mia Manager".into(),
                role: crate::model::UserRole::Manager,
                teams: vec![Team::parse("billing")?, Team::parse("technical")?],
                password_hash: Some(demo_hash.clone()),
            })
            .await?;
        let mut lines = Vec::new();
        for (name, email, skills, team, presence) in AGENTS {
            let agent = store
                .create_agent(NewAgent {
                    name: (*name).into(),
                    email: EmailAddress::parse(email)?,
                    skills: skills
                        .iter()
                        .map(|s| Skill::parse(s))
                        .collect::<Result<_, _>>()?,
                    teams: vec![Team::parse(team)?],
                    max_concurrent: 3,
                    capacity: Default::default(),
                    hours: None,
                })
                .await?;
            store.set_presence(agent.id, *presence).await?;
            store
                .set_password(agent.id.into(), demo_hash.clone())
                .await?;
            let token = new_token("baton_agent");
            store
                .insert_token(&hash_token(&token), Role::Agent(agent.id), "demo agent")
                .await?;
            lines.push(format!("{name}\t{}\t{token}", agent.id));
        }
        let path = services.settings.data_dir.join("demo-agent-tokens.tsv");
        write_private(&path, &lines.join("\n")).context("cannot write the demo agent tokens")?;
        tracing::info!(path = %path.display(), "demo agents created; their API tokens are in this file");
        tracing::info!(
            "demo sign-in (the demo password is in the README): admin@example.com, \
             mia@example.com (manager), ada@example.com and grace@example.com (agents)"
        );
    }
    for (i, (sender, name, text)) in CONVERSATIONS.iter().enumerate() {
        services
            .pipeline
            .accept(InboundMessage {
                channel: ChannelKind::Api,
                sender: SenderProfile {
                    identity: Identity::channel(ChannelKind::Api, sender)?,
                    display_name: Some((*name).into()),
                    email: None,
                    phone: None,
                },
                conversation_id: None,
                external_id: Some(format!("demo-message-{i}")),
                text: MessageText::parse(text)?,
                html: None,
                attachments: Vec::new(),
                sent_at: None,
            })
            .await?;
    }
    for agent in services.store.list_agents().await? {
        services.router.agent_changed(agent.id).await?;
    }
    Ok(())
}
