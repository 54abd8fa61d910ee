//! Flight SQL: statements and prepared statements planned over the caller's own tables, their parameters, and the metadata commands.

use super::*;

impl FlightSql {
    /// Plan and run a statement, streaming its result.
    pub(super) async fn execute(
        &self,
        p: &Principal,
        sql: &str,
        params: Option<&str>,
    ) -> Result<BoxStream<FlightData>, Status> {
        let (ctx, plan) = self.plan(p, sql, params).await?;
        let schema: SchemaRef = Arc::new(plan.schema().as_arrow().clone());
        let stream = self.sql.execute(ctx, plan).await?;
        let batches = stream.map_err(|s| FlightError::Tonic(Box::new(s)));
        Ok(encode(schema, batches))
    }

    pub(super) async fn plan(
        &self,
        p: &Principal,
        sql: &str,
        params: Option<&str>,
    ) -> Result<
        (
            datafusion::prelude::SessionContext,
            datafusion::logical_expr::LogicalPlan,
        ),
        Status,
    > {
        let values = match params {
            Some(b64) => Some(decode_params(b64)?),
            None => None,
        };
        let (ctx, plan) = self.sql.plan(p, sql, None).await?;
        let Some(values) = values else {
            return Ok((ctx, plan));
        };
        // Cast each bound value to the type the statement expects there, so
        // an int32 from a client fills an int64 slot.
        let types = plan.get_parameter_types().map_err(error::datafusion)?;
        let mut cast = Vec::with_capacity(values.len());
        for (i, v) in values.into_iter().enumerate() {
            let want = types.get(&format!("${}", i + 1)).cloned().flatten();
            cast.push(match want {
                Some(t) if v.data_type() != t && !v.is_null() => v.cast_to(&t).map_err(|e| {
                    Status::invalid_argument(format!("parameter {}: cannot be read as {t}: {e}", i + 1))
                })?,
                _ => v,
            });
        }
        let plan = plan.with_param_values(cast).map_err(error::datafusion)?;
        Ok((ctx, plan))
    }

    pub(super) async fn sql_info_for(
        &self,
        p: &Principal,
        sql: &str,
        params: Option<&str>,
    ) -> Result<SchemaRef, Status> {
        let (_, plan) = self.plan(p, sql, params).await?;
        Ok(Arc::new(plan.schema().as_arrow().clone()))
    }
}

/// One bound parameter row, as an Arrow IPC stream in base64.
pub(super) fn encode_params(batch: &RecordBatch) -> Result<String, Status> {
    let mut buf = Vec::new();
    {
        let mut w =
            arrow::ipc::writer::StreamWriter::try_new(&mut buf, &batch.schema()).map_err(|e| error::internal(&e))?;
        w.write(batch).map_err(|e| error::internal(&e))?;
        w.finish().map_err(|e| error::internal(&e))?;
    }
    Ok(STANDARD.encode(buf))
}

pub(super) fn decode_params(b64: &str) -> Result<Vec<ScalarValue>, Status> {
    let bad = |e: &dyn std::fmt::Display| Status::invalid_argument(format!("bound parameters: {e}"));
    let bytes = STANDARD.decode(b64).map_err(|e| bad(&e))?;
    let mut reader =
        arrow::ipc::reader::StreamReader::try_new(std::io::Cursor::new(bytes), None).map_err(|e| bad(&e))?;
    let Some(batch) = reader.next().transpose().map_err(|e| bad(&e))? else {
        return Ok(Vec::new());
    };
    batch
        .columns()
        .iter()
        .map(|c| ScalarValue::try_from_array(c, 0).map_err(|e| bad(&e)))
        .collect()
}

pub(super) fn parameter_schema(plan: &datafusion::logical_expr::LogicalPlan) -> Result<Schema, Status> {
    let types = plan.get_parameter_types().map_err(error::datafusion)?;
    let mut named: Vec<(usize, String, DataType)> = types
        .into_iter()
        .map(|(name, t)| {
            let n = name.trim_start_matches('$').parse::<usize>().unwrap_or(usize::MAX);
            (n, name, t.unwrap_or(DataType::Null))
        })
        .collect();
    named.sort();
    Ok(Schema::new(
        named
            .into_iter()
            .map(|(_, name, t)| Field::new(name, t, true))
            .collect::<Vec<_>>(),
    ))
}

pub(super) fn info_for_command(
    schema: &Schema,
    command: Any,
    descriptor: FlightDescriptor,
) -> Result<Response<FlightInfo>, Status> {
    let info = FlightInfo::new()
        .try_with_schema(schema)
        .map_err(|e| error::internal(&e))?
        .with_endpoint(FlightEndpoint::new().with_ticket(Ticket::new(command.encode_to_vec())))
        .with_descriptor(descriptor);
    Ok(Response::new(info))
}

#[tonic::async_trait]
impl FlightSqlService for FlightSql {
    type FlightService = FlightSql;

    async fn do_handshake(
        &self,
        request: Request<Streaming<HandshakeRequest>>,
    ) -> Result<Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>>, Status> {
        self.limit_address(&request)?;
        let header = request
            .metadata()
            .get("authorization")
            .and_then(|v| v.to_str().ok())
            .ok_or_else(|| {
                Status::unauthenticated("Handshake needs `authorization: Basic base64(email:password)` or Basic with user `token` and an API key")
            })?;
        let token = if let Some(b64) = header.strip_prefix("Basic ") {
            let decoded = STANDARD
                .decode(b64.trim())
                .ok()
                .and_then(|b| String::from_utf8(b).ok())
                .ok_or_else(|| Status::unauthenticated("the Basic credentials are not base64 of `user:password`"))?;
            let (user, password) = decoded
                .split_once(':')
                .ok_or_else(|| Status::unauthenticated("the Basic credentials are not `user:password`"))?;
            if user == "token" {
                // An API key (or session token) as the password: check it and
                // hand it back as the bearer to use.
                self.state
                    .accounts
                    .authenticate(password, request.remote_addr().map(|a| a.ip().to_string()).as_deref())
                    .await
                    .map_err(error::platform)?;
                password.to_owned()
            } else {
                let meta = meta_of(&request);
                match self.state.accounts.log_in(&meta, user, password, None, None).await {
                    Ok(session) => session.token,
                    Err(doppel_platform::Error::MfaRequired) => {
                        return Err(Status::unauthenticated(
                            "this account signs in with a second factor: Handshake with user `token` and an API key instead",
                        ));
                    }
                    Err(e) => return Err(error::platform(e)),
                }
            }
        } else if header.starts_with("Bearer ") {
            // Already a bearer: validate it and echo it.
            self.principal(&request).await?;
            bearer(&request)?.to_owned()
        } else {
            return Err(Status::unauthenticated("Handshake needs Basic credentials"));
        };
        let value = MetadataValue::try_from(format!("Bearer {token}")).map_err(|e| error::internal(&e))?;
        let out = futures::stream::iter([Ok(HandshakeResponse {
            protocol_version: 0,
            payload: token.into_bytes().into(),
        })]);
        let mut response: Response<Pin<Box<dyn Stream<Item = Result<HandshakeResponse, Status>> + Send>>> =
            Response::new(Box::pin(out));
        response.metadata_mut().insert("authorization", value);
        Ok(response)
    }

    async fn get_flight_info_fallback(
        &self,
        command: arrow_flight::sql::Command,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let any = command.into_any();
        let target = if any.type_url.is_empty() {
            target::parse(request.get_ref())?
        } else {
            target::parse_any(&any)?
        };
        Ok(Response::new(self.info(&p, target).await?))
    }

    async fn do_get_fallback(
        &self,
        request: Request<Ticket>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        if message.type_url != TICKET_TYPE_URL {
            return Err(Status::invalid_argument(
                "unknown ticket: use a ticket from GetFlightInfo or ListFlights",
            ));
        }
        Ok(Response::new(self.do_get_ticket(&p, &message.value).await?))
    }

    async fn do_put_fallback(
        &self,
        request: Request<PeekableFlightDataStream>,
        message: Any,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        if !message.type_url.is_empty() && message.type_url != target::DATASET_REF_URL {
            self.principal(&request).await?;
            return Err(Status::invalid_argument(format!(
                "DoPut: unknown command `{}`; upload a dataset with the path [\"datasets\", name]",
                message.type_url
            )));
        }
        self.put_dataset(request).await
    }

    async fn do_put_error_callback(
        &self,
        request: Request<PeekableFlightDataStream>,
        error: arrow_flight::sql::server::DoPutError,
    ) -> Result<Response<<Self as FlightService>::DoPutStream>, Status> {
        self.principal(&request).await?;
        Err(Status::invalid_argument(format!("DoPut: {error}")))
    }

    async fn do_action_fallback(
        &self,
        request: Request<Action>,
    ) -> Result<Response<<Self as FlightService>::DoActionStream>, Status> {
        let p = self.principal(&request).await?;
        let meta = meta_of(&request);
        let result = self.action(&p, &meta, request.get_ref()).await?;
        let out = futures::stream::iter([Ok(arrow_flight::Result {
            body: result.to_string().into_bytes().into(),
        })]);
        Ok(Response::new(Box::pin(out)))
    }

    async fn list_custom_actions(&self) -> Option<Vec<Result<ActionType, Status>>> {
        Some(
            ACTIONS
                .iter()
                .map(|(t, d)| {
                    Ok(ActionType {
                        r#type: (*t).to_owned(),
                        description: (*d).to_owned(),
                    })
                })
                .collect(),
        )
    }

    // ------------------------------------------------------------ Flight SQL

    async fn get_flight_info_statement(
        &self,
        query: CommandStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let schema = self.sql_info_for(&p, &query.query, None).await?;
        let handle = self.sign(
            &p,
            Grants::Sql {
                sql: query.query,
                params: None,
            },
        );
        let ticket = TicketStatementQuery {
            statement_handle: handle.into(),
        };
        info_for_command(&schema, ticket.as_any(), request.into_inner())
    }

    async fn do_get_statement(
        &self,
        ticket: TicketStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        Ok(Response::new(self.do_get_ticket(&p, &ticket.statement_handle).await?))
    }

    async fn do_action_create_prepared_statement(
        &self,
        query: ActionCreatePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<ActionCreatePreparedStatementResult, Status> {
        let p = self.principal(&request).await?;
        let (_, plan) = self.sql.plan(&p, &query.query, None).await?;
        let dataset_schema = ipc_schema(plan.schema().as_arrow())?;
        let parameters = parameter_schema(&plan)?;
        let parameter_schema = if parameters.fields().is_empty() {
            bytes::Bytes::new()
        } else {
            ipc_schema(&parameters)?
        };
        Ok(ActionCreatePreparedStatementResult {
            prepared_statement_handle: self
                .sign(
                    &p,
                    Grants::Sql {
                        sql: query.query,
                        params: None,
                    },
                )
                .into(),
            dataset_schema,
            parameter_schema,
        })
    }

    async fn do_action_close_prepared_statement(
        &self,
        _query: ActionClosePreparedStatementRequest,
        request: Request<Action>,
    ) -> Result<(), Status> {
        // Handles are stateless: nothing to free.
        self.principal(&request).await?;
        Ok(())
    }

    async fn do_put_prepared_statement_query(
        &self,
        query: CommandPreparedStatementQuery,
        request: Request<PeekableFlightDataStream>,
    ) -> Result<DoPutPreparedStatementResult, Status> {
        let p = self.principal(&request).await?;
        let Grants::Sql { sql, .. } = self.redeem(&p, &query.prepared_statement_handle)? else {
            return Err(Status::invalid_argument("not a prepared statement handle"));
        };
        // One row of values is all a query binds: the upload is read up to
        // `limits.sql_parameters_kb`, never buffered whole.
        let max = self.state.settings.limits.sql_parameters_kb.saturating_mul(1024);
        let mut stream = FlightRecordBatchStream::new_from_flight_data(request.into_inner().map_err(FlightError::from));
        let mut batches: Vec<RecordBatch> = Vec::new();
        let mut held = 0usize;
        while let Some(batch) = stream.next().await {
            let batch = batch.map_err(flight_status)?;
            held += batch.get_array_memory_size();
            if held > max {
                return Err(Status::invalid_argument(format!(
                    "bound parameters: more than {} KiB (limits.sql_parameters_kb)",
                    max / 1024
                )));
            }
            batches.push(batch);
        }
        let rows: usize = batches.iter().map(RecordBatch::num_rows).sum();
        let params = match (batches.iter().find(|b| b.num_rows() > 0), rows) {
            (None, _) => None,
            (Some(b), 1) => Some(encode_params(b)?),
            (Some(_), n) => {
                return Err(Status::invalid_argument(format!(
                    "bind one row of parameters to a query (got {n}); run the statement once per row"
                )));
            }
        };
        // Check the statement plans with these values before handing out a handle.
        self.plan(&p, &sql, params.as_deref()).await?;
        Ok(DoPutPreparedStatementResult {
            prepared_statement_handle: Some(self.sign(&p, Grants::Sql { sql, params }).into()),
        })
    }

    async fn get_flight_info_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        let p = self.principal(&request).await?;
        let Grants::Sql { sql, params } = self.redeem(&p, &cmd.prepared_statement_handle)? else {
            return Err(Status::invalid_argument("not a prepared statement handle"));
        };
        let schema = self.sql_info_for(&p, &sql, params.as_deref()).await?;
        info_for_command(&schema, cmd.as_any(), request.into_inner())
    }

    async fn do_get_prepared_statement(
        &self,
        cmd: CommandPreparedStatementQuery,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        Ok(Response::new(
            self.do_get_ticket(&p, &cmd.prepared_statement_handle).await?,
        ))
    }

    async fn get_flight_info_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_catalogs(
        &self,
        query: CommandGetCatalogs,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::CATALOG);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_schemas(
        &self,
        query: CommandGetDbSchemas,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::CATALOG, sql::DATASETS);
        b.append(sql::CATALOG, sql::OUTPUTS);
        b.append(sql::CATALOG, sql::PURCHASES);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_tables(
        &self,
        query: CommandGetTables,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_tables(
        &self,
        query: CommandGetTables,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        let p = self.principal(&request).await?;
        let mut b = query.into_builder();
        for t in self.sql.tables(&p).await? {
            b.append(sql::CATALOG, t.schema_name, &t.name, sql::TABLE_TYPE, &t.schema)
                .map_err(|e| error::internal(&e))?;
        }
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.into_builder().schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_table_types(
        &self,
        query: CommandGetTableTypes,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        let mut b = query.into_builder();
        b.append(sql::TABLE_TYPE);
        Ok(Response::new(one_batch(b.build())?))
    }

    async fn get_flight_info_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<FlightDescriptor>,
    ) -> Result<Response<FlightInfo>, Status> {
        self.principal(&request).await?;
        let schema = query.clone().into_builder(&self.sql_info).schema();
        info_for_command(&schema, query.as_any(), request.into_inner())
    }

    async fn do_get_sql_info(
        &self,
        query: CommandGetSqlInfo,
        request: Request<Ticket>,
    ) -> Result<Response<<Self as FlightService>::DoGetStream>, Status> {
        self.principal(&request).await?;
        Ok(Response::new(one_batch(query.into_builder(&self.sql_info).build())?))
    }

    async fn register_sql_info(&self, _id: i32, _result: &SqlInfo) {}
}
