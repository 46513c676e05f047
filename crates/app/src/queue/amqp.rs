//! RabbitMQ broker (being built).
