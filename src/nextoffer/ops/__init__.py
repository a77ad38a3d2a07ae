"""Operations: backups, restore, verification, retention, cache rebuild, DR drill, doctor."""
