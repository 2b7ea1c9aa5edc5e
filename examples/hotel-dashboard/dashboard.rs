// A hotel's own dashboard with async-nats: the current figures by request, then each
// change on the hotel's live subject, each handed to `show`.
use futures_util::StreamExt;

pub async fn follow_dashboard(
    url: &str,
    hotel: &str,
    password: &str,
    mut show: impl FnMut(serde_json::Value),
) -> Result<(), async_nats::Error> {
    let client = async_nats::ConnectOptions::with_user_and_password(hotel.into(), password.into())
        .custom_inbox_prefix(format!("_INBOX_{hotel}"))
        .connect(url)
        .await?;
    let mut live = client
        .subscribe(format!("analytics.live.dashboard.{hotel}"))
        .await?;
    let reply = client
        .request(format!("analytics.query.dashboard.{hotel}"), "{}".into())
        .await?;
    show(serde_json::from_slice(&reply.payload)?);
    while let Some(message) = live.next().await {
        show(serde_json::from_slice(&message.payload)?);
    }
    Ok(())
}
