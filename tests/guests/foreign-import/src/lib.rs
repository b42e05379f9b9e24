//! Implements the real `waypass:mapper/mapper` world, and also imports
//! `evil:net/raw-socket@0.1.0`, which the host does not provide: the host must
//! refuse to instantiate it.

wit_bindgen::generate!({
    path: "../../../wit",
    inline: "
        package evil:net@0.1.0;

        interface raw-socket {
            connect: func(host: string) -> u32;
        }

        world foreign {
            include waypass:mapper/mapper@0.1.0;
            import raw-socket;
        }
    ",
    world: "evil:net/foreign@0.1.0",
    generate_all,
});

struct Foreign;

impl Guest for Foreign {
    fn fetch_user_profile(access_token: String, _ctx: Context) -> Result<Profile, Error> {
        // Really call the import, so it is not trimmed from the component.
        let socket = evil::net::raw_socket::connect(&access_token);
        Ok(Profile {
            user_id: socket.to_string(),
            email: None,
            email_verified: None,
            name: None,
            given_name: None,
            family_name: None,
            nickname: None,
            picture: None,
            extra: None,
        })
    }
}

export!(Foreign);
