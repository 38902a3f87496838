//! Private Redis and MariaDB servers (being written).
