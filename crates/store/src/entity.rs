//! The wire types: one sea-orm entity per table of the migrations. Private to the crate; the
//! port implementations convert them to domain types in `mapping.rs`.

pub(crate) mod tenants {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "tenants")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub id: String,
        pub name: String,
        pub location_id: String,
        pub ekyte_company_id: i64,
        pub active: bool,
        #[sea_orm(column_type = "JsonBinary")]
        pub settings: Json,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub ghl_company_id: Option<String>,
        pub install_kind: String,
        pub installed_at: Option<DateTimeUtc>,
        pub lifecycle_at: Option<DateTimeUtc>,
        pub ghl_timezone: Option<String>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod credentials {
    use sea_orm::entity::prelude::*;

    // `Debug` by hand: even sealed bytes have no business in a log line.
    #[derive(Clone, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "credentials")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        pub key_id: String,
        #[sea_orm(column_type = "Blob")]
        pub nonce: Vec<u8>,
        #[sea_orm(column_type = "Blob")]
        pub ciphertext: Vec<u8>,
        pub expires_at: Option<DateTimeUtc>,
        pub version: i64,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("credentials::Model")
                .field("tenant_id", &self.tenant_id)
                .field("provider", &self.provider)
                .field("key_id", &self.key_id)
                .field("version", &self.version)
                .finish_non_exhaustive()
        }
    }
}

pub(crate) mod links {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "links")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub kind: String,
        pub ghl_id: Option<String>,
        pub ekyte_id: Option<String>,
        pub ghl_parent: Option<String>,
        pub ekyte_parent: Option<String>,
        pub state: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub base: Json,
        pub ghl_fp: Option<String>,
        pub ekyte_fp: Option<String>,
        pub version: i64,
        pub claimed_by: Option<String>,
        pub claimed_at: Option<DateTimeUtc>,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod inbox {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "inbox")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub source: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub dedupe_key: String,
        pub created_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod sync_runs {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "sync_runs")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub kind: String,
        pub status: String,
        pub cursor: Option<String>,
        pub since: Option<DateTimeUtc>,
        #[sea_orm(column_type = "JsonBinary")]
        pub counts: Json,
        pub error: Option<String>,
        pub started_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
        pub finished_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod audit_log {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "audit_log")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: String,
        pub at: DateTimeUtc,
        pub target: Option<String>,
        pub kind: String,
        pub action: String,
        pub contact_id: Option<String>,
        pub ghl_id: Option<String>,
        pub ekyte_id: Option<String>,
        #[sea_orm(column_type = "JsonBinary")]
        pub fields: Json,
        pub reason: Option<String>,
        pub message_id: Option<String>,
        pub dry_run: bool,
        pub ghl_calls: Option<i32>,
        pub ekyte_calls: Option<i32>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod dead_letters {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "dead_letters")]
    pub struct Model {
        #[sea_orm(primary_key)]
        pub id: i64,
        pub tenant_id: Option<String>,
        pub message_id: String,
        pub kind: String,
        #[sea_orm(column_type = "Text")]
        pub envelope: String,
        #[sea_orm(column_type = "JsonBinary")]
        pub error_chain: Json,
        pub attempts: i64,
        pub created_at: DateTimeUtc,
        pub replayed_at: Option<DateTimeUtc>,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod ghl_agencies {
    use sea_orm::entity::prelude::*;

    // `Debug` by hand: even sealed bytes have no business in a log line.
    #[derive(Clone, PartialEq, DeriveEntityModel)]
    #[sea_orm(table_name = "ghl_agencies")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub company_id: String,
        pub key_id: String,
        #[sea_orm(column_type = "Blob")]
        pub nonce: Vec<u8>,
        #[sea_orm(column_type = "Blob")]
        pub ciphertext: Vec<u8>,
        pub expires_at: Option<DateTimeUtc>,
        pub version: i64,
        pub install_to_future: bool,
        pub created_at: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}

    impl std::fmt::Debug for Model {
        fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
            f.debug_struct("ghl_agencies::Model")
                .field("company_id", &self.company_id)
                .field("key_id", &self.key_id)
                .field("version", &self.version)
                .finish_non_exhaustive()
        }
    }
}

pub(crate) mod ghl_pending_locations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "ghl_pending_locations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub location_id: String,
        pub company_id: String,
        pub name: Option<String>,
        pub reason: String,
        pub since: DateTimeUtc,
        pub updated_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod credential_refresh_failures {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "credential_refresh_failures")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub tenant_id: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub provider: String,
        pub at: DateTimeUtc,
        pub error: String,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}

pub(crate) mod observations {
    use sea_orm::entity::prelude::*;

    #[derive(Clone, Debug, PartialEq, Eq, DeriveEntityModel)]
    #[sea_orm(table_name = "observations")]
    pub struct Model {
        #[sea_orm(primary_key, auto_increment = false)]
        pub kind: String,
        #[sea_orm(primary_key, auto_increment = false)]
        pub subject: String,
        pub body: String,
        pub observed_at: DateTimeUtc,
    }

    #[derive(Copy, Clone, Debug, EnumIter, DeriveRelation)]
    pub enum Relation {}

    impl ActiveModelBehavior for ActiveModel {}
}
