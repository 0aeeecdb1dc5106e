-- Queries of the commit listener (relay/storage/notify.py).

-- name: sender_is_relay
-- Whether the backend with this pid runs as the role of this connection (the relay's).
SELECT usename = current_user FROM pg_stat_activity WHERE pid = $1
